"""``push``: a Panda pushes a block to a hidden goal on the table (robosuite has no push task, so it is built here).

Task parameter: ``{"goal_x", "goal_y"}``, the goal's world coordinates in metres
(table centre is (0, 0); the robot base sits at x ~ -0.56, so +x is away from the robot).
Goals are drawn from a ``goal_region`` (x offset, y offset ranges) relative to the
block's nominal start: by default 10-20 cm ahead of it and +-7 cm sideways (within the
friction cone of a straight push on the block's face, so one push can reach every goal).
The goal is never drawn in the camera image (``show_goal`` draws it in ``render()``,
for videos only).

Each episode starts with the hand low, 4 cm behind the block (``start="ready"``; ``"home"`` is
robosuite's pose above the table): the episode is about where to push, not how to get there.

Reward: 1 when the block centre is within ``success_radius`` (4 cm) of the goal in xy,
else 0. ``info["dense_reward"]`` = -|block - goal| - 0.5 |eef - block| (xy, metres) for
experts and diagnostics; ``info["distance"]`` = |block - goal| (xy, metres). Action: end-effector xyz delta in [-1, 1] (x ``max_delta`` metres),
gripper held closed. Horizon 50 control steps at 20 Hz (the expert is done in about 11). Camera: robosuite's ``agentview``,
re-aimed at the block and goal region (the other scene cameras work too).

``info["state"]``: eef_pos, eef_quat, gripper_qpos, block_pos, block_quat (w x y z),
block_half_size, goal (x, y, table height), block_start.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_envs.base import Task, within
from robot_envs.robosuite_common import RobosuiteFamily, RobosuiteTaskEnv, add_arm_gravcomp, mat2quat

TABLE_TOP_Z = 0.8
BLOCK_START = (-0.10, 0.0)
GOAL_REGION = ((0.10, 0.20), (-0.07, 0.07))  # (x offset range, y offset range) from BLOCK_START, metres
STARTS = ("ready", "home")  # ready: fingertips low, just behind the block; home: robosuite's pose above the table
READY_GAP = 0.04  # metres between the block's back face and the end effector at the start
READY_HEIGHT = 0.025  # end-effector height above the table at the start
CAMERA_POS = (0.50, 0.0, 1.45)
CAMERA_TARGET = (-0.15, 0.0, 0.90)


def check_start(start: str) -> None:
    if start not in STARTS:
        raise ValueError(f"unknown push start {start!r}; use one of {STARTS}")


def _look_at_quat(pos: tuple[float, ...], target: tuple[float, ...]) -> np.ndarray:
    """MuJoCo camera quaternion (w x y z) looking from ``pos`` at ``target`` with world z up."""
    forward = np.subtract(target, pos) / np.linalg.norm(np.subtract(target, pos))
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return mat2quat(np.stack([right, up, -forward], axis=1))  # columns: camera x, y, z axes


def _push_suite_class():
    """Defined lazily so importing robot_envs.push does not import robosuite."""
    from robosuite.environments.manipulation.manipulation_env import ManipulationEnv
    from robosuite.models.arenas import TableArena
    from robosuite.models.objects import BoxObject
    from robosuite.models.tasks import ManipulationTask

    class PushBlock(ManipulationEnv):
        """Table, Panda and one block; no reward of its own (the goal belongs to the gymnasium wrapper)."""

        def __init__(self, block_half_size: float = 0.025, arm_gravcomp: bool = False, **kwargs: Any) -> None:
            self.arm_gravcomp = arm_gravcomp
            self.table_full_size = (0.8, 0.8, 0.05)
            self.table_offset = np.array((0.0, 0.0, TABLE_TOP_Z))
            self.block_half_size = block_half_size
            super().__init__(**kwargs)

        def reward(self, action=None) -> float:
            return 0.0

        def _check_success(self) -> bool:
            return False

        def _load_model(self) -> None:
            super()._load_model()
            robot = self.robots[0].robot_model
            robot.set_base_xpos(robot.base_xpos_offset["table"](self.table_full_size[0]))
            arena = TableArena(table_full_size=self.table_full_size, table_offset=self.table_offset)
            arena.set_origin([0, 0, 0])
            # agentview re-aimed at the push area (robosuite's default looks past it at the robot base)
            arena.set_camera(camera_name="agentview", pos=list(CAMERA_POS), quat=list(_look_at_quat(CAMERA_POS, CAMERA_TARGET)))
            self.block = BoxObject(
                name="block",
                size=[self.block_half_size] * 3,
                rgba=[0.85, 0.15, 0.15, 1.0],
                density=200.0,
                friction=(0.8, 0.005, 0.0001),
            )
            self.model = ManipulationTask(
                mujoco_arena=arena, mujoco_robots=[robot], mujoco_objects=[self.block]
            )
            if self.arm_gravcomp:
                add_arm_gravcomp(self.model.worldbody)

        def _setup_references(self) -> None:
            super()._setup_references()
            self.block_body_id = self.sim.model.body_name2id(self.block.root_body)

        def place_block(self, xy: np.ndarray) -> None:
            z = TABLE_TOP_Z + self.block_half_size
            self.sim.data.set_joint_qpos(self.block.joints[0], np.array([xy[0], xy[1], z, 1.0, 0.0, 0.0, 0.0]))
            self.sim.data.set_joint_qvel(self.block.joints[0], np.zeros(6))

        def _reset_internal(self) -> None:
            super()._reset_internal()
            self.place_block(np.array(BLOCK_START))

    return PushBlock


class PushEnv(RobosuiteTaskEnv):
    action_dim = 3

    def __init__(
        self,
        task: Task,
        success_radius: float = 0.04,
        block_noise: float = 0.01,
        block_half_size: float = 0.025,
        start: str = "ready",
        **kwargs: Any,
    ) -> None:
        check_start(start)
        self.start = start
        self.success_radius = float(success_radius)
        self.block_noise = float(block_noise)
        self.block_half_size = float(block_half_size)
        self._block_start = np.array(BLOCK_START)
        super().__init__(task, **kwargs)
        self._block_body = self.suite.block_body_id

    def _make_suite(self, suite_kwargs: dict[str, Any]):
        return _push_suite_class()(block_half_size=self.block_half_size, **suite_kwargs)

    @property
    def goal(self) -> np.ndarray:
        return np.array([self.task.params["goal_x"], self.task.params["goal_y"]])

    def _start_eef_pos(self) -> np.ndarray | None:
        if self.start == "home":
            return None
        return np.array([BLOCK_START[0] - self.block_half_size - READY_GAP, BLOCK_START[1], TABLE_TOP_Z + READY_HEIGHT])

    def _randomize(self) -> None:
        self._block_start = np.array(BLOCK_START) + self.np_random.uniform(-self.block_noise, self.block_noise, 2)
        self.suite.place_block(self._block_start)

    def place_block(self, xy: np.ndarray):
        """Put the block at ``xy`` (at rest) and return (obs, info) there: for tests and expert debugging."""
        self.suite.place_block(np.asarray(xy, dtype=np.float64))
        return self.set_sim_state(self.get_sim_state())

    def _task_state(self) -> dict[str, np.ndarray]:
        return {
            "block_pos": self.data.xpos[self._block_body].copy(),
            "block_quat": self.data.xquat[self._block_body].copy(),
            "block_half_size": np.array([self.block_half_size]),
            "goal": np.array([*self.goal, TABLE_TOP_Z]),
            "block_start": self._block_start.copy(),
        }

    def _score(self, state: dict[str, np.ndarray]) -> tuple[bool, float]:
        to_goal = float(np.linalg.norm(state["block_pos"][:2] - self.goal))
        to_block = float(np.linalg.norm(state["eef_pos"][:2] - state["block_pos"][:2]))
        return to_goal <= self.success_radius, -to_goal - 0.5 * to_block

    def _extra_info(self, state: dict[str, np.ndarray]) -> dict[str, float]:
        return {"distance": float(np.linalg.norm(state["block_pos"][:2] - self.goal))}

    def _grip_command(self, action: np.ndarray) -> float:
        return 1.0

    def _workspace(self) -> tuple[np.ndarray, np.ndarray]:
        # the closed fingertips stay ~1 cm above the table; x, y stay over the table
        return np.array([-0.35, -0.35, TABLE_TOP_Z + 0.01]), np.array([0.35, 0.35, TABLE_TOP_Z + 0.30])

    def _goal_markers(self) -> list[tuple[np.ndarray, float, np.ndarray]]:
        return [(np.array([*self.goal, TABLE_TOP_Z + 0.005]), self.success_radius, np.array([0.1, 0.8, 0.1, 0.5]))]


class PushFamily(RobosuiteFamily):
    """Goals uniform in ``goal_region`` (x, y offset ranges in metres) ahead of the block's nominal start."""

    name = "push"
    env_class = PushEnv
    step_metrics = ("distance",)
    step_metric_units = {"distance": "m"}

    def __init__(
        self,
        goal_region: tuple[tuple[float, float], tuple[float, float]] = GOAL_REGION,
        success_radius: float = 0.04,
        block_noise: float = 0.01,
        block_half_size: float = 0.025,
        horizon: int = 50,
        start: str = "ready",
        **kwargs: Any,
    ) -> None:
        super().__init__(horizon=horizon, **kwargs)
        check_start(start)
        self.start = start
        (x0, x1), (y0, y1) = goal_region
        if not (x0 <= x1 and y0 <= y1):
            raise ValueError(f"goal_region must be ((x_min, x_max), (y_min, y_max)), got {goal_region}")
        self.goal_region = ((float(x0), float(x1)), (float(y0), float(y1)))
        self.success_radius = float(success_radius)
        self.block_noise = float(block_noise)
        self.block_half_size = float(block_half_size)

    def _sample_params(self, rng: np.random.Generator) -> dict[str, float]:
        (x0, x1), (y0, y1) = self.goal_region
        return {"goal_x": BLOCK_START[0] + rng.uniform(x0, x1), "goal_y": BLOCK_START[1] + rng.uniform(y0, y1)}

    def default_task(self) -> Task:
        (x0, x1), (y0, y1) = self.goal_region
        params = {"goal_x": BLOCK_START[0] + (x0 + x1) / 2, "goal_y": BLOCK_START[1] + (y0 + y1) / 2}
        return Task(self.name, "train", -1, params)

    def make_env(self, task: Task | None = None) -> PushEnv:
        return PushEnv(
            task or self.default_task(),
            success_radius=self.success_radius,
            block_noise=self.block_noise,
            block_half_size=self.block_half_size,
            start=self.start,
            **self._env_kwargs(),
        )

    def goal_achieved(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(state["block_pos"], np.float32)[..., :2]

    def goal_desired(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(state["goal"], np.float32)[..., :2]

    def goal_success(self, achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
        return within(achieved, desired, self.success_radius)

    def env_args(self) -> dict[str, Any]:
        return {
            **super().env_args(),
            "goal_region": [list(r) for r in self.goal_region],
            "success_radius": self.success_radius,
            "block_noise": self.block_noise,
            "block_half_size": self.block_half_size,
            "block_start": list(BLOCK_START),
            "start": self.start,
        }
