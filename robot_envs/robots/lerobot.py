"""Drive any robot with LeRobot's robot protocol (``lerobot.robots.Robot``) from ``vgmps deploy``.

LeRobot's protocol: ``observation_features`` / ``action_features`` (dicts: a motor key such as
``"shoulder_pan.pos"`` -> ``float``, a camera key -> ``(H, W, 3)``), ``is_connected``,
``connect(calibrate=True)``, ``get_observation() -> dict``, ``send_action(dict) -> dict`` (the
action actually sent, after the robot's own ``max_relative_target`` clipping) and
``disconnect()``. LeRobot itself is optional: this module never imports it; pass a robot
object, or ``factory="module:function"`` that builds one (e.g. an ``SO101Follower`` from its config).

Mapping to our vectors: the image is the ``camera`` feature (default: the first camera),
resized by nearest neighbour to ``image_size``; proprio is ``proprio_keys`` (default: every
float observation feature); action component ``i`` moves ``action_keys[i]`` by
``action_scale[i] * a[i]`` from its current value (``delta=True``, for position-controlled
joints or end-effector coordinates), or is sent as ``action_scale[i] * a[i]`` (``delta=False``,
for robots whose actions are already deltas, such as LeRobot's end-effector variants).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from robot_envs.robots.base import CameraFault, Observation, Robot, RobotFault
from robot_envs.robots.reward import load_callable


class LeRobotAdapter(Robot):
    name = "lerobot"

    def __init__(self, robot: Any = None, factory: str | None = None, factory_kwargs: dict | None = None,
                 camera: str | None = None, image_size: list[int] | None = None,
                 proprio_keys: list[str] | None = None, action_keys: list[str] | None = None,
                 action_scale: float | list[float] = 1.0, delta: bool = True,
                 home: dict[str, float] | None = None, home_steps: int = 40, home_hz: float = 20.0) -> None:
        if robot is None:
            if not factory:
                raise ValueError("LeRobotAdapter needs robot= (a LeRobot robot) or factory='module:function' building one")
            robot = load_callable(factory)(**dict(factory_kwargs or {}))
        missing = [m for m in ("observation_features", "action_features", "connect", "get_observation", "send_action",
                               "disconnect", "is_connected") if not hasattr(robot, m)]
        if missing:
            raise ValueError(f"{type(robot).__name__} lacks LeRobot's robot protocol: no {missing}")
        self.lerobot = robot
        obs_features = dict(robot.observation_features)
        cameras = [k for k, v in obs_features.items() if isinstance(v, tuple)]
        self.camera = camera or (cameras[0] if cameras else None)
        if self.camera not in cameras:
            raise ValueError(f"camera {self.camera!r} is not a camera feature of the robot; cameras: {cameras}")
        self.image_size = tuple(image_size) if image_size else tuple(obs_features[self.camera][:2])
        self.proprio_keys = list(proprio_keys or [k for k, v in obs_features.items() if not isinstance(v, tuple)])
        self.action_keys = list(action_keys or robot.action_features)
        unknown = [k for k in self.action_keys if k not in robot.action_features]
        unknown += [k for k in self.proprio_keys if k not in obs_features]
        if unknown:
            raise ValueError(f"keys {unknown} are not features of the robot; action features: "
                             f"{list(robot.action_features)}, observation features: {list(obs_features)}")
        if delta and (absent := [k for k in self.action_keys if k not in obs_features]):
            raise ValueError(f"delta=True needs each action key observed to know its current value; not observed: {absent}")
        scale = np.broadcast_to(np.asarray(action_scale, dtype=np.float64), (len(self.action_keys),))
        self.action_scale, self.delta = scale.copy(), bool(delta)
        self.home, self.home_steps, self.home_hz = dict(home or {}), int(home_steps), float(home_hz)
        self._raw: dict[str, Any] = {}

    @property
    def observation_features(self) -> dict[str, Any]:
        return {"image": (*self.image_size, 3), "proprio": (len(self.proprio_keys),)}

    @property
    def action_features(self) -> dict[str, Any]:
        return {"action": (len(self.action_keys),)}

    @property
    def is_connected(self) -> bool:
        return bool(self.lerobot.is_connected)

    def connect(self, calibrate: bool = True) -> None:
        self._guard(lambda: self.lerobot.connect(calibrate=calibrate))

    def disconnect(self) -> None:
        self._guard(self.lerobot.disconnect)

    def get_observation(self) -> Observation:
        raw = self._guard(self.lerobot.get_observation, camera=True)
        stamp = time.time()  # LeRobot observations carry no capture time; its camera reads raise on timeout
        self._raw = raw
        image = np.asarray(raw[self.camera])
        if image.ndim != 3:
            raise CameraFault(f"camera {self.camera!r} returned an array of shape {image.shape}")
        if tuple(image.shape[:2]) != self.image_size:  # nearest neighbour: no OpenCV needed
            rows = np.linspace(0, image.shape[0] - 1, self.image_size[0]).round().astype(int)
            cols = np.linspace(0, image.shape[1] - 1, self.image_size[1]).round().astype(int)
            image = image[rows][:, cols]
        proprio = np.array([float(raw[k]) for k in self.proprio_keys], dtype=np.float32)
        return {"image": np.ascontiguousarray(image[..., :3], dtype=np.uint8), "proprio": proprio, "timestamp": stamp}

    def _base(self) -> np.ndarray:
        if not self.delta:
            return np.zeros(len(self.action_keys))
        if not self._raw:
            self.get_observation()
        return np.array([float(self._raw[k]) for k in self.action_keys])

    def send_action(self, action: np.ndarray) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64).ravel()
        if a.shape != (len(self.action_keys),):
            raise RobotFault(f"action has {a.size} components, the adapter maps {len(self.action_keys)}: {self.action_keys}")
        base = self._base()
        command = {k: float(v) for k, v in zip(self.action_keys, base + self.action_scale * a)}
        sent = self._guard(lambda: self.lerobot.send_action(command))
        sent_vec = np.array([float(sent.get(k, command[k])) for k in self.action_keys])
        return ((sent_vec - base) / self.action_scale).astype(np.float32)

    def hold(self) -> None:
        if self.delta:  # command the current position: a position-controlled arm stops there
            self.send_action(np.zeros(len(self.action_keys), dtype=np.float32))
        else:
            self._guard(lambda: self.lerobot.send_action({k: 0.0 for k in self.action_keys}))

    def reset(self) -> Observation:
        """Interpolate to ``home`` (a dict of action-key targets) at ``home_hz``, so homing never jumps."""
        if self.home:
            start = self._base() if self.delta else None
            for i in range(1, self.home_steps + 1):
                frac = i / self.home_steps
                command = {k: (1 - frac) * float(start[j]) + frac * self.home[k] if start is not None else self.home[k]
                           for j, k in enumerate(self.action_keys) if k in self.home}
                self._guard(lambda c=command: self.lerobot.send_action(c))
                time.sleep(1.0 / self.home_hz)
        return self.get_observation()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "lerobot_robot": type(self.lerobot).__name__, "camera": self.camera,
                "proprio_keys": self.proprio_keys, "action_keys": self.action_keys,
                "action_scale": self.action_scale.tolist(), "delta": self.delta}

    @staticmethod
    def _guard(fn: Any, camera: bool = False) -> Any:
        """LeRobot raises its own errors (DeviceNotConnectedError, TimeoutError from camera reads): make them faults."""
        try:
            return fn()
        except RobotFault:
            raise
        except TimeoutError as err:
            raise (CameraFault if camera else RobotFault)(f"LeRobot robot timed out: {err}") from err
        except Exception as err:  # noqa: BLE001 - any driver error must reach the safety layer as a fault
            raise RobotFault(f"LeRobot robot error: {type(err).__name__}: {err}") from err
