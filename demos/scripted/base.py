from __future__ import annotations

import abc

import numpy as np


class ScriptedExpert(abc.ABC):
    """A controller on privileged state. Stateless, so any visited state can be labelled (DAgger)."""

    @abc.abstractmethod
    def act(self, state: dict[str, np.ndarray]) -> np.ndarray:
        """Expert action in [-1, 1] for one env's privileged state."""

    def act_batch(self, states: dict[str, np.ndarray]) -> np.ndarray:
        """Label a batch: ``states[key]`` has a leading batch axis; returns [B, action_dim]."""
        n = len(next(iter(states.values())))
        return np.stack([self.act({k: v[i] for k, v in states.items()}) for i in range(n)])
