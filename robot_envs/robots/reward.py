"""Reward on a real arm: a success detector, the operator, or (simulated robots) the simulator.

All are sparse, as in simulation: 1 at every step the detector sees success (``detector``,
``simulator``), or 1 at the last step if the operator says the episode succeeded
(``operator``). An episode's success is its success at the last step either way.
The ``provenance`` string is stored with every episode, so a file says how it was judged.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

from robot_envs.robots.base import Observation, load_object

Ask = Callable[[int], bool]  # episode number -> did it succeed?


class RewardSource:
    provenance = "unknown"

    def step(self, obs: Observation) -> float:
        """Reward for arriving in ``obs`` (0 for sources that only judge at the end)."""
        return 0.0

    def finish(self, rewards: list[float], episode: int) -> tuple[np.ndarray, bool]:
        """Final rewards [T] and success, once the arm is held at the episode's end."""
        return np.asarray(rewards, dtype=np.float32), bool(rewards and rewards[-1] > 0)


class SimulatorReward(RewardSource):
    """The simulator's own success flag (``obs["success"]``), as ``vgmps adapt`` uses it."""

    provenance = "simulator"

    def step(self, obs: Observation) -> float:
        if "success" not in obs:
            raise ValueError("reward.source=simulator needs a simulated robot (observations carry 'success'); "
                             "on a real arm use reward.source=operator or detector")
        return float(bool(obs["success"]))


class DetectorReward(RewardSource):
    """A user function ``fn(observation) -> bool`` named ``module:function`` in config."""

    def __init__(self, spec: str) -> None:
        self.fn = load_callable(spec)
        self.provenance = f"detector:{spec}"

    def step(self, obs: Observation) -> float:
        return float(bool(self.fn(obs)))


class OperatorReward(RewardSource):
    """The operator judges each episode at its end; ``ask`` is a key prompt or a script."""

    def __init__(self, ask: Ask, provenance: str = "operator") -> None:
        self.ask, self.provenance = ask, provenance

    def finish(self, rewards: list[float], episode: int) -> tuple[np.ndarray, bool]:
        success = bool(self.ask(episode))
        out = np.zeros(len(rewards), dtype=np.float32)
        if len(out):
            out[-1] = float(success)
        return out, success


def scripted_operator(answers: str) -> OperatorReward:
    """An operator who answers from a string, cycled: ``"yn"`` = success, failure, success, ...

    For tests and rehearsals; the provenance says ``operator(scripted)`` so such files are never mistaken.
    """
    if not answers or set(answers.lower()) - set("yn"):
        raise ValueError(f"reward.scripted_answers must be a string of y/n, got {answers!r}")
    return OperatorReward(lambda k: answers[k % len(answers)].lower() == "y", "operator(scripted)")


def key_prompt(read_key: Callable[[], str] | None = None) -> Ask:
    """Ask at a terminal: y = success, n = failure (the arm is held meanwhile)."""

    def ask(episode: int) -> bool:
        while True:
            print(f"\nepisode {episode + 1} finished: success? [y/n] ", end="", flush=True)
            key = (read_key() if read_key else sys.stdin.readline()).strip().lower()[:1]
            if key in ("y", "n"):
                return key == "y"

    return ask


def load_callable(spec: str) -> Callable[..., Any]:
    fn = load_object(spec, "success detector")
    if not callable(fn):
        raise ValueError(f"success detector {spec!r} is not callable")
    return fn
