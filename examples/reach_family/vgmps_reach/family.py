"""``reach``: a fingertip on a table must reach a target that is never drawn.

Written against the public contract in ``robot_envs/base.py`` only, as a user's package would be.
The scene is a plain MuJoCo XML file (``scene.xml``), rendered with ``mujoco.Renderer`` from
an overhead camera; the target (``target_x``, ``target_y``) is the hidden task parameter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

# vision-gmps picks a working headless GL backend (EGL, else OSMesa); MuJoCo reads the
# choice when it is first imported, so this import comes before ``import mujoco``.
from robot_envs.rendering import select_gl_backend

select_gl_backend()
import mujoco  # noqa: E402

from robot_envs.base import Task, TaskFamily, check_action  # noqa: E402

SCENE = Path(__file__).resolve().parent / "scene.xml"
SUBSTEPS = 5  # 5 x 10 ms physics steps per control step: 20 Hz control


class ReachEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, task: Task, image_size: tuple[int, int], horizon: int, max_delta: float,
                 success_radius: float, start_noise: float) -> None:
        self.task = task
        self.horizon = horizon
        self.max_delta = max_delta
        self.success_radius = success_radius
        self.start_noise = start_noise
        self.model = mujoco.MjModel.from_xml_path(str(SCENE))
        self.data = mujoco.MjData(self.model)
        self.renderer = mujoco.Renderer(self.model, int(image_size[0]), int(image_size[1]))
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (int(image_size[0]), int(image_size[1]), 3), np.uint8),
            "proprio": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        })
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._t = 0

    @property
    def target(self) -> np.ndarray:
        return np.array([self.task.params["target_x"], self.task.params["target_y"]])

    def render(self) -> np.ndarray:
        self.renderer.update_scene(self.data, camera="overhead")
        return self.renderer.render().copy()

    def _observe(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        position = self.data.qpos[:2].copy()
        distance = float(np.linalg.norm(position - self.target))
        obs = {"image": self.render(), "proprio": position.astype(np.float32)}
        info = {"success": distance <= self.success_radius, "dense_reward": -distance, "distance": distance,
                "state": {"position": position, "target": self.target}}
        return obs, info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:2] = self.np_random.uniform(-self.start_noise, self.start_noise, 2)
        self.data.ctrl[:] = self.data.qpos[:2]
        mujoco.mj_forward(self.model, self.data)
        self._t = 0
        return self._observe()

    def step(self, action):
        action = check_action(action, self.action_space)
        low, high = self.model.actuator_ctrlrange.T
        self.data.ctrl[:] = np.clip(self.data.qpos[:2] + self.max_delta * action, low, high)
        mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)
        mujoco.mj_forward(self.model, self.data)  # body positions for the new qpos: the image matches the state
        self._t += 1
        obs, info = self._observe()
        return obs, float(info["success"]), False, self._t >= self.horizon, info

    # Optional part of the contract: exact state save/restore, so recorded demos replay exactly.
    def get_sim_state(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel, self.data.ctrl]).astype(np.float64)

    def set_sim_state(self, state: np.ndarray):
        nq, nv = self.model.nq, self.model.nv
        state = np.asarray(state, np.float64).ravel()
        self.data.qpos[:], self.data.qvel[:], self.data.ctrl[:] = state[:nq], state[nq:nq + nv], state[nq + nv:]
        mujoco.mj_forward(self.model, self.data)
        return self._observe()

    def model_xml(self) -> str:
        return SCENE.read_text()

    def close(self) -> None:
        self.renderer.close()


class ReachFamily(TaskFamily):
    """Targets ``radius`` (min, max metres) from the start, at angles in ``angle_deg`` (min, max)."""

    name = "reach"
    step_metrics = ("distance",)  # logged per step, reported as final_distance
    step_metric_units = {"distance": "m"}
    # expert = None: the expert registered under "reach" (this package's entry point)

    def __init__(self, image_size: tuple[int, int] = (24, 24), horizon: int = 20, max_delta: float = 0.03,
                 radius: tuple[float, float] = (0.12, 0.16), angle_deg: tuple[float, float] = (45.0, 135.0),
                 success_radius: float = 0.05, start_noise: float = 0.01) -> None:
        if not 0.0 < radius[0] <= radius[1] <= 0.24:
            raise ValueError(f"radius must satisfy 0 < min <= max <= 0.24 (the table), got {radius}")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.horizon = int(horizon)
        self.max_delta = float(max_delta)
        self.radius = (float(radius[0]), float(radius[1]))
        self.angle_deg = (float(angle_deg[0]), float(angle_deg[1]))
        self.success_radius = float(success_radius)
        self.start_noise = float(start_noise)

    def _sample_params(self, rng: np.random.Generator) -> dict[str, float]:
        angle, r = np.deg2rad(rng.uniform(*self.angle_deg)), rng.uniform(*self.radius)
        return {"target_x": r * np.cos(angle), "target_y": r * np.sin(angle)}

    def make_env(self, task: Task | None = None) -> ReachEnv:
        task = task or Task(self.name, "train", -1, {"target_x": 0.0, "target_y": self.radius[0]})
        return ReachEnv(task, self.image_size, self.horizon, self.max_delta, self.success_radius, self.start_noise)

    def expert_kwargs(self) -> dict[str, Any]:
        return {"max_delta": self.max_delta}  # the expert scales its action as the env does

    def env_args(self) -> dict[str, Any]:
        return {**super().env_args(), "image_size": list(self.image_size), "max_delta": self.max_delta,
                "radius": list(self.radius), "angle_deg": list(self.angle_deg), "success_radius": self.success_radius, "start_noise": self.start_noise}
