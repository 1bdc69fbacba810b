"""The task-family API every family (point, push, door) shares.

A *family* is a distribution over tasks that differ only in a hidden parameter
(a goal position, a target angle). The learner sees pixels and proprioception;
the parameter must be discovered from reward. Privileged state (including the
hidden parameter) is exposed in ``info["state"]`` for scripted experts only.

Contract of every env built by ``TaskFamily.make_env``:

* ``observation_space`` is a ``Dict`` with ``image`` (uint8 HxWx3) and
  ``proprio`` (float32 [k]); ``action_space`` is a ``Box`` in [-1, 1].
* Episodes have a fixed length: ``terminated`` is never True and ``truncated``
  becomes True at ``horizon``. Fixed-length episodes let the samplers keep
  [episodes, time] tensors without padding.
* ``info`` after ``reset`` and every ``step`` holds ``success`` (bool, at this
  step), ``dense_reward`` (float) and ``state`` (dict of float arrays).
  An episode's success is its success at the final step.
* ``env.task`` can be assigned between episodes: this is how vectorised
  samplers reuse one worker for many tasks (``VectorEnv.set_attr("task", ...)``).
* The image must not show the hidden parameter (the goal): it is learned from reward.
* Optional, for exact replay of recorded demos: ``env.get_sim_state() -> 1-D float array`` and
  ``env.set_sim_state(state) -> (obs, info)``. A family without them still collects demos
  (stored with empty states) but ``vgmps demos replay`` refuses them, saying why
  (see :func:`supports_replay`, :func:`sim_state`).
* Optional, for plain MuJoCo scenes: ``env.model_xml() -> str`` stored with each demo.
* Optional, for reports: ``env.render_view(size, camera=None) -> uint8 [size, size, 3]``, a viewer
  image of the whole scene with the hidden parameter drawn (never part of ``obs``). Without it
  the report's video shows the policy's own image, scaled up.
* Optional, for state-only learners (RL experts): an attribute ``render_images`` (default True);
  set to False, observations carry an all-zero image and the camera is never drawn, so a learner
  that reads only ``info["state"]`` does not pay for rendering.

What the family itself declares, so the stack needs no per-family code:

* ``step_metrics``: names of extra per-step ``info`` scalars (e.g. ``"distance"``) that samplers
  record and reports show as ``final_<name>``; ``step_metric_units`` (optional) names their units
  (``{"distance": "m"}``) for the report's text and tables.
* ``expert``: which scripted expert labels its states (``"module:Class"``, a registered expert
  name, or ``None`` for the expert registered under the family's name), and ``expert_kwargs()``:
  the settings that expert needs from the family (e.g. metres per unit action).
* Default constructor arguments: ``env.family=NAME`` alone builds the family with them.
* Optional, for goal-conditioned RL experts (``vgmps experts train mode=goal``, hindsight relabelling)
  and for matching a state to its task's expert: ``goal_achieved(state)`` and ``goal_desired(state)``
  map a privileged state dict (arrays with any leading batch axes) to float vectors of one size (what
  the episode moves, e.g. the block's xy; what the task asks of it, e.g. the goal's xy: the hidden
  parameter), and ``goal_success(achieved, desired)`` says, elementwise over leading axes, whether
  that is a success (the same test as ``info["success"]``). ``goal_reward`` defaults to
  ``success - 1`` (0 on success, -1 elsewhere: SB3's HER convention). ``has_goal_contract(family)``
  tells whether a family declares it.

``robot_envs.testing.check_family`` checks all of this for a family author.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

# train: meta-training; valid: choosing settings and the learning curve during training; test: the
# reported tables only. "valid" comes last so the random streams of train and test (seeded by the
# split's position) are the ones they always were.
SPLITS: tuple[str, ...] = ("train", "test", "valid")


@dataclass(frozen=True)
class Task:
    """One member of a family: its hidden parameters and where it came from."""

    family: str
    split: str
    index: int
    params: dict[str, float] = field(hash=False)

    @property
    def task_id(self) -> str:
        """Stable, human-readable id, e.g. ``point/train/3``."""
        return f"{self.family}/{self.split}/{self.index}"

    def to_json(self) -> str:
        return json.dumps({"family": self.family, "split": self.split, "index": self.index, "params": self.params})

    @classmethod
    def from_json(cls, text: str) -> "Task":
        raw = json.loads(text)
        return cls(raw["family"], raw["split"], int(raw["index"]), {k: float(v) for k, v in raw["params"].items()})


class TaskFamily(abc.ABC):
    """A seeded distribution over tasks plus a way to build an env for one.

    Subclasses set ``name`` and ``horizon`` and implement ``_sample_params`` and
    ``make_env``. The train, test and valid sets come from independent random streams
    (``(seed, split)``), so the first k tasks of a split do not change when more
    are requested, and the splits are checked to be pairwise disjoint.
    """

    name: ClassVar[str]
    horizon: int
    # Per-step ``info`` scalars the stack records, logs and reports (final value per episode).
    step_metrics: ClassVar[tuple[str, ...]] = ()
    # Their units, for reports ({"distance": "m"}); a metric without one is printed bare.
    step_metric_units: ClassVar[dict[str, str]] = {}
    # The scripted expert for this family: "module:Class", a registered expert name, or None
    # (the expert registered under ``name``: built in, or an entry point of ``vision_gmps.experts``).
    expert: ClassVar[str | None] = None

    def sample(self, split: str, n: int, seed: int = 0) -> list[Task]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        if n < 0:
            raise ValueError(f"number of tasks must be >= 0, got {n}")
        tasks = self._draw(split, n, seed)
        # Continuous parameters collide with probability zero, but a family with a coarse
        # parameter grid could collide: refuse instead of leaking tasks between splits.
        for other in SPLITS[: SPLITS.index(split)]:
            other_keys = {self._key(t) for t in self._draw(other, max(n, 64), seed)}
            leaked = [t.task_id for t in tasks if self._key(t) in other_keys]
            if leaked:
                raise RuntimeError(f"{self.name}: {split} tasks {leaked} also appear in the {other} split")
        return tasks

    def _draw(self, split: str, n: int, seed: int) -> list[Task]:
        rng = np.random.default_rng([seed, SPLITS.index(split), 0x7A5C])
        return [Task(self.name, split, i, self._sample_params(rng)) for i in range(n)]

    @staticmethod
    def _key(task: Task) -> tuple[tuple[str, float], ...]:
        return tuple(sorted((k, round(v, 9)) for k, v in task.params.items()))

    @abc.abstractmethod
    def _sample_params(self, rng: np.random.Generator) -> dict[str, float]:
        """Draw one task's hidden parameters."""

    @abc.abstractmethod
    def make_env(self, task: Task | None = None) -> gym.Env:
        """Build a gymnasium env for ``task`` (or a default task, set ``env.task`` later)."""

    def env_args(self) -> dict[str, Any]:
        """JSON-able description of how envs are built (stored in demo files and checkpoints)."""
        cls = type(self)
        return {"family": self.name, "family_class": f"{cls.__module__}:{cls.__qualname__}", "horizon": self.horizon}

    def expert_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for this family's scripted expert (settings it shares with the env)."""
        return {}

    # ----- optional goal contract (RL experts); see the module docstring -----------------------
    def goal_achieved(self, state: dict[str, np.ndarray]) -> np.ndarray:
        """What the episode has achieved so far, [..., goal_dim] float (e.g. the block's xy)."""
        raise NotImplementedError(f"family {self.name!r} declares no goal contract (goal_achieved); see robot_envs/base.py")

    def goal_desired(self, state: dict[str, np.ndarray]) -> np.ndarray:
        """What the task asks for, [..., goal_dim] float: the hidden parameter, privileged."""
        raise NotImplementedError(f"family {self.name!r} declares no goal contract (goal_desired); see robot_envs/base.py")

    def goal_success(self, achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
        """Elementwise over leading axes: is ``achieved`` a success for ``desired`` (as ``info["success"]``)."""
        raise NotImplementedError(f"family {self.name!r} declares no goal contract (goal_success); see robot_envs/base.py")

    def goal_reward(self, achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
        """Reward for hindsight relabelling: 0 on success, -1 elsewhere."""
        return self.goal_success(achieved, desired).astype(np.float32) - 1.0


def has_goal_contract(family: TaskFamily) -> bool:
    """Whether ``family`` overrides the optional goal contract (``goal_achieved``/``goal_desired``/``goal_success``)."""
    cls = type(family)
    return all(getattr(cls, n) is not getattr(TaskFamily, n) for n in ("goal_achieved", "goal_desired", "goal_success"))


def within(achieved: np.ndarray, desired: np.ndarray, radius: float) -> np.ndarray:
    """Euclidean distance over the last axis at most ``radius``: the success test of most goal families."""
    return np.linalg.norm(np.asarray(achieved) - np.asarray(desired), axis=-1) <= radius


def supports_replay(env: Any) -> bool:
    """Whether ``env`` can save and restore its exact simulator state (the optional replay contract)."""
    return callable(getattr(env, "get_sim_state", None)) and callable(getattr(env, "set_sim_state", None))


def sim_state(env: Any) -> np.ndarray:
    """``env.get_sim_state()`` as a flat float64 array, or an empty one when the family has no state saving."""
    if not callable(getattr(env, "get_sim_state", None)):
        return np.zeros(0, np.float64)
    return np.asarray(env.get_sim_state(), np.float64).ravel()


def require_replay(env: Any, what: str) -> None:
    """Refuse ``what`` with a clear message when ``env`` lacks ``get_sim_state``/``set_sim_state``."""
    if not supports_replay(env):
        raise NotImplementedError(
            f"{what} needs exact state restore, and {type(env).__name__} has no get_sim_state()/set_sim_state(); "
            "add both to the env (see robot_envs/base.py)"
        )


def check_action(action: Any, space: gym.spaces.Box) -> np.ndarray:
    """Validate an action before it reaches the simulator; a bad one gets a message, not a NaN state."""
    arr = np.asarray(action, dtype=np.float64)
    if arr.shape != space.shape:
        raise ValueError(f"action has shape {arr.shape}, expected {space.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"action contains NaN or inf: {arr.tolist()}")
    return np.clip(arr, space.low, space.high)
