from __future__ import annotations

import numpy as np

from demos.scripted.base import ScriptedExpert


class PointExpert(ScriptedExpert):
    """Head straight for the goal at full speed, stopping on it: exact for the point family."""

    def __init__(self, max_step: float = 0.1) -> None:
        self.max_step = max_step

    def act(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return np.clip((state["goal"] - state["position"]) / self.max_step, -1.0, 1.0).astype(np.float32)

    def act_batch(self, states: dict[str, np.ndarray]) -> np.ndarray:
        return np.clip((states["goal"] - states["position"]) / self.max_step, -1.0, 1.0).astype(np.float32)
