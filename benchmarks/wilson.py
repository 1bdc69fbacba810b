"""95% Wilson score interval of a success rate, for the benchmark tables.

Stands in for ``vision_gmps.evaluation.wilson_interval`` (the evaluation-protocol module, merged
separately); switch the imports to it once it is on main.
"""

from __future__ import annotations

import math


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)
