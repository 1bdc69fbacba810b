"""A simulated arm behind the ``Robot`` interface: any task family (``push``, ``door``, ``point``).

It is what ``vgmps deploy robot=sim`` drives to rehearse a deployment end to end, and
what the robot server serves in tests. Observations carry the simulator's state
(``state``, so deploy files replay exactly) and its own success flag (``success``,
for ``reward.source=simulator``). ``camera_fails_after`` rehearses a camera that stops
delivering frames: after that many actions the same frame (same timestamp) comes back.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from robot_envs import Task, make_family
from robot_envs.robots.base import Observation, Robot, RobotFault


class SimRobot(Robot):
    name = "sim"

    def __init__(
        self,
        family: str = "point",
        family_kwargs: dict[str, Any] | None = None,
        seed: int = 0,
        step_seconds: float = 0.0,
        camera_fails_after: int | None = None,
    ) -> None:
        self.family = make_family(family, **dict(family_kwargs or {}))
        self.seed = int(seed)
        self.step_seconds = float(step_seconds)  # pace like a real arm (0: as fast as the simulator)
        self.camera_fails_after = camera_fails_after
        self._env = None
        self._obs: Observation | None = None
        self._resets = 0
        self.actions_sent = 0
        self.holds = 0  # tests check that faults hold the arm
        self.held = False

    @property
    def observation_features(self) -> dict[str, Any]:
        space = self._space()
        return {"image": tuple(space["image"].shape), "proprio": tuple(space["proprio"].shape)}

    @property
    def action_features(self) -> dict[str, Any]:
        return {"action": tuple(self._action_space().shape)}

    def _space(self):
        return (self._env or self._probe()).observation_space

    def _action_space(self):
        return (self._env or self._probe()).action_space

    def _probe(self):
        self._env = self.family.make_env()
        return self._env

    @property
    def is_connected(self) -> bool:
        return self._env is not None and self._obs is not None

    def connect(self, calibrate: bool = True) -> None:
        if self._env is None:
            self._env = self.family.make_env()
        self.reset()

    def disconnect(self) -> None:
        if self._env is not None:
            self._env.close()
        self._env, self._obs = None, None

    def set_task(self, task: Task | dict | str) -> None:
        if isinstance(task, str):
            task = Task.from_json(task)
        elif isinstance(task, dict):
            task = Task(task["family"], task["split"], int(task["index"]), dict(task["params"]))
        if task.family != self.family.name:
            raise RobotFault(f"task {task.task_id} is not a {self.family.name} task")
        self._require().task = task

    def reset(self, seed: int | None = None) -> Observation:
        """Seeded like the simulator's sampler when ``seed`` is given, else from the robot's own sequence."""
        env = self._require()
        obs, info = env.reset(seed=self.seed * 100_003 + self._resets if seed is None else int(seed))
        self._resets += 1
        self.held = False
        self._obs = self._observation(env, obs, info)
        return self._obs

    def get_observation(self) -> Observation:
        if self._obs is None:
            raise RobotFault("sim robot is not connected; call connect() first")
        return dict(self._obs)

    def send_action(self, action: np.ndarray) -> np.ndarray:
        env = self._require()
        sent = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        obs, _reward, _term, _trunc, info = env.step(sent)
        self.actions_sent += 1
        self.held = False
        frozen = self.camera_fails_after is not None and self.actions_sent > self.camera_fails_after
        new = self._observation(env, obs, info)
        if frozen and self._obs is not None:  # the camera stalls: image and timestamp stay as they were
            new["image"], new["timestamp"] = self._obs["image"], self._obs["timestamp"]
        self._obs = new
        if self.step_seconds:
            time.sleep(self.step_seconds)
        return sent

    def hold(self) -> None:
        # A position-controlled arm holds by commanding no motion; the simulator simply stops stepping.
        self.holds += 1
        self.held = True

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "simulated": True, "env_args": self.family.env_args(), "horizon": self.family.horizon}

    def _require(self):
        if self._env is None:
            raise RobotFault("sim robot is not connected; call connect() first")
        return self._env

    @staticmethod
    def _observation(env: Any, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Observation:
        return {
            "image": np.asarray(obs["image"], dtype=np.uint8),
            "proprio": np.asarray(obs["proprio"], dtype=np.float32),
            "timestamp": time.time(),
            "state": np.asarray(env.get_sim_state(), dtype=np.float64).ravel(),
            "success": bool(info["success"]),
        }
