"""``point``: a 2-D point mass in a pixel world, goal hidden.

Thousands of steps per second, so meta-learning can be checked in seconds.
The agent starts near the centre; the goal lies on the upper half of a circle
of radius ``goal_distance``; reward is 1 inside ``goal_radius`` and 0 elsewhere.
The image shows the point and a fixed frame, never the goal, so the goal can
only be inferred from reward.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from robot_envs.base import Task, TaskFamily, check_action, within

_BACKGROUND = np.array([228, 228, 220], dtype=np.uint8)
_FRAME = np.array([90, 90, 90], dtype=np.uint8)
_AGENT = np.array([210, 40, 40], dtype=np.uint8)


class PointEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        task: Task,
        image_size: tuple[int, int] = (32, 32),
        horizon: int = 20,
        max_step: float = 0.1,
        goal_radius: float = 0.3,
        start_noise: float = 0.05,
    ) -> None:
        height, width = int(image_size[0]), int(image_size[1])
        if height < 8 or width < 8:
            raise ValueError(f"point image_size must be at least 8x8, got {image_size}")
        self.task = task
        self.horizon = horizon
        self.max_step = max_step
        self.goal_radius = goal_radius
        self.start_noise = start_noise
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, (height, width, 3), np.uint8),
                "proprio": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        # Pixel centres in world coordinates; row 0 is the top (y = +1).
        self._xs = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
        self._ys = np.linspace(1, -1, height, dtype=np.float32)[:, None]
        self._agent_radius = max(2.5 / min(height, width) * 2, 0.08)
        self._frame = self._draw_frame(height, width)
        self.render_images = True  # False: blank images, for state-only learners (robot_envs/base.py)
        self._blank = np.zeros_like(self._frame)
        self._pos = np.zeros(2)
        self._t = 0

    @property
    def goal(self) -> np.ndarray:
        return np.array([self.task.params["goal_x"], self.task.params["goal_y"]])

    def _draw_frame(self, height: int, width: int) -> np.ndarray:
        img = np.empty((height, width, 3), np.uint8)
        img[:] = _BACKGROUND
        img[0, :] = img[-1, :] = img[:, 0] = img[:, -1] = _FRAME
        return img

    def render(self) -> np.ndarray:
        img = self._frame.copy()
        mask = (self._xs - self._pos[0]) ** 2 + (self._ys - self._pos[1]) ** 2 <= self._agent_radius**2
        img[mask] = _AGENT
        return img

    def set_state(self, position: np.ndarray) -> None:
        """Place the point (for tests and replays); the goal stays the task's."""
        self._pos = np.clip(np.asarray(position, dtype=np.float64), -1.0, 1.0)

    def get_sim_state(self) -> np.ndarray:
        """Everything needed to reproduce the current frame: for point, the position."""
        return self._pos.astype(np.float64).copy()

    def set_sim_state(self, state: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Restore a state from ``get_sim_state`` (demo replay); returns the observation and info there."""
        self._pos = np.asarray(state, dtype=np.float64).reshape(2).copy()
        return self._observe()

    def model_xml(self) -> str:
        """No MJCF model: point is drawn with numpy."""
        return ""

    def _observe(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        distance = float(np.linalg.norm(self._pos - self.goal))
        obs = {"image": self.render() if self.render_images else self._blank, "proprio": self._pos.astype(np.float32)}
        info = {
            "success": distance <= self.goal_radius,
            "dense_reward": -distance,
            "distance": distance,
            "state": {"position": self._pos.copy(), "goal": self.goal},
        }
        return obs, info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.task = options["task"]
        self._pos = self.np_random.uniform(-self.start_noise, self.start_noise, size=2)
        self._t = 0
        return self._observe()

    def step(self, action):
        action = check_action(action, self.action_space)
        self._pos = np.clip(self._pos + self.max_step * action, -1.0, 1.0)
        self._t += 1
        obs, info = self._observe()
        reward = 1.0 if info["success"] else 0.0
        return obs, reward, False, self._t >= self.horizon, info


class PointFamily(TaskFamily):
    """Goals on the upper half-circle of radius ``goal_distance`` around the start."""

    name = "point"
    step_metrics = ("distance",)

    def __init__(
        self,
        image_size: tuple[int, int] = (32, 32),
        horizon: int = 20,
        goal_distance: float = 0.7,
        goal_radius: float = 0.3,
        max_step: float = 0.1,
    ) -> None:
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.horizon = int(horizon)
        self.goal_distance = float(goal_distance)
        self.goal_radius = float(goal_radius)
        self.max_step = float(max_step)

    def _sample_params(self, rng: np.random.Generator) -> dict[str, float]:
        angle = rng.uniform(0.0, np.pi)
        return {"goal_x": self.goal_distance * np.cos(angle), "goal_y": self.goal_distance * np.sin(angle)}

    def make_env(self, task: Task | None = None) -> PointEnv:
        task = task or Task(self.name, "train", -1, {"goal_x": 0.0, "goal_y": self.goal_distance})
        return PointEnv(task, self.image_size, self.horizon, self.max_step, self.goal_radius)

    def expert_kwargs(self) -> dict[str, Any]:
        return {"max_step": self.max_step}

    def goal_achieved(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(state["position"], np.float32)

    def goal_desired(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(state["goal"], np.float32)

    def goal_success(self, achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
        return within(achieved, desired, self.goal_radius)

    def env_args(self) -> dict[str, Any]:
        return {
            **super().env_args(),
            "image_size": list(self.image_size),
            "goal_distance": self.goal_distance,
            "goal_radius": self.goal_radius,
            "max_step": self.max_step,
        }
