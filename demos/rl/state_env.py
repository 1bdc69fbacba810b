"""Gymnasium views of a family env on privileged state, for stable-baselines3 experts.

The image policy never sees these observations: they are ``info["state"]`` (hidden parameter
included), flattened in a recorded layout, so an expert trained here can later label the states
an image policy visits (DAgger) from the same dicts.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from robot_envs.base import Task, TaskFamily

Layout = list[tuple[str, int]]


def state_layout(state: dict[str, np.ndarray]) -> Layout:
    """(key, size) of every privileged-state entry, in sorted key order: the expert's input layout."""
    return [(k, int(np.asarray(state[k]).size)) for k in sorted(state)]


def flatten_state(states: dict[str, np.ndarray], layout: Layout) -> np.ndarray:
    """[..., D] float32 from a state dict whose arrays may carry leading batch axes (one env: none)."""
    parts = []
    for key, size in layout:
        if key not in states:
            raise KeyError(f"privileged state has no {key!r} (it has {sorted(states)}); the expert was trained on another layout")
        value = np.asarray(states[key], np.float32)
        lead = value.shape[:-1] if value.ndim and value.shape[-1] == size else value.shape
        parts.append(value.reshape(*lead, size))
    return np.concatenate(parts, axis=-1)


def _box(dim: int) -> gym.spaces.Box:
    return gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)


class StateEnv(gym.Env):
    """A family env seen through its privileged state, one of ``tasks`` per episode.

    ``goal_conditioned=False``: observation is the flat state, reward the family's dense reward
    (``info["dense_reward"]``): one SAC expert per task. ``True``: a dict observation
    (``observation``, ``achieved_goal``, ``desired_goal``) and ``compute_reward`` from the family's
    goal contract (``robot_envs/base.py``), for stable-baselines3's ``HerReplayBuffer``.
    ``skip_images`` turns off the camera where the env allows it (``render_images``).
    """

    metadata = {"render_modes": []}

    def __init__(self, family: TaskFamily, tasks: list[Task], goal_conditioned: bool = False,
                 skip_images: bool = True, seed: int = 0) -> None:
        if not tasks:
            raise ValueError("StateEnv needs at least one task")
        self.family, self.tasks, self.goal_conditioned = family, list(tasks), goal_conditioned
        self.env = family.make_env(self.tasks[0])
        if skip_images and hasattr(self.env, "render_images"):
            self.env.render_images = False
        self.action_space = self.env.action_space
        self.env_steps = 0  # every env.step, for the zoo's accounting
        _, info = self.env.reset(seed=seed)
        self.layout = state_layout(info["state"])
        dim = sum(size for _, size in self.layout)
        if goal_conditioned:
            goal_dim = int(np.asarray(family.goal_desired(info["state"])).size)
            self.observation_space = gym.spaces.Dict(
                {"observation": _box(dim), "achieved_goal": _box(goal_dim), "desired_goal": _box(goal_dim)})
        else:
            self.observation_space = _box(dim)

    def _obs(self, state: dict[str, np.ndarray]) -> Any:
        flat = flatten_state(state, self.layout)
        if not self.goal_conditioned:
            return flat
        return {"observation": flat, "achieved_goal": np.asarray(self.family.goal_achieved(state), np.float32).ravel(),
                "desired_goal": np.asarray(self.family.goal_desired(state), np.float32).ravel()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.env.task = self.tasks[int(self.np_random.integers(len(self.tasks)))]
        _, info = self.env.reset(seed=int(self.np_random.integers(2**31)))
        return self._obs(info["state"]), {"is_success": bool(info["success"])}

    def step(self, action):
        _, _, terminated, truncated, info = self.env.step(action)
        self.env_steps += 1
        obs = self._obs(info["state"])
        if self.goal_conditioned:
            reward = float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"], None))
        else:
            reward = float(info["dense_reward"])
        return obs, reward, terminated, truncated, {"is_success": bool(info["success"])}

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, _info: Any) -> np.ndarray:
        """HER's relabelled reward; vectorised over a leading batch axis."""
        return np.asarray(self.family.goal_reward(achieved_goal, desired_goal), np.float32)

    def close(self) -> None:
        self.env.close()
