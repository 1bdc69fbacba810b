"""Scripted expert for ``reach``: head for the target, slowing down on it. Reads privileged state only."""

from __future__ import annotations

import numpy as np

from demos.scripted.base import ScriptedExpert


class ReachExpert(ScriptedExpert):
    def __init__(self, max_delta: float = 0.03) -> None:
        self.max_delta = max_delta

    def act_batch(self, states: dict[str, np.ndarray]) -> np.ndarray:
        return np.clip((states["target"] - states["position"]) / self.max_delta, -1.0, 1.0).astype(np.float32)

    def act(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return self.act_batch({k: np.asarray(v)[None] for k, v in state.items()})[0]
