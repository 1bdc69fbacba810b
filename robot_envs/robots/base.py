"""The robot interface the deploy loop drives: a small abstract class shaped like LeRobot's ``Robot``.

LeRobot users will recognise ``observation_features``, ``action_features``,
``is_connected``, ``connect(calibrate)``, ``get_observation()``, ``send_action()``
(which returns the action actually sent) and ``disconnect()``. What we add is what
adaptation on hardware needs and LeRobot leaves to the caller:

* ``reset()`` drives the arm to its home pose and returns the first observation (a simulated
  robot may also take ``reset(seed=...)``: the deploy loop then seeds each episode as the
  simulator's sampler does, so a rehearsal reproduces ``vgmps adapt`` exactly);
* ``hold()`` stops motion at once (the safety layer's watchdog and e-stop call it);
* faults are exceptions: ``CameraFault`` when no fresh frame arrives, ``RobotFault``
  for anything else the arm reports. The deploy loop holds the arm, writes the
  episode so far and tells the operator what happened.

Observations are ``{"image": uint8 [H, W, 3], "proprio": float32 [P], "timestamp": float}``
(``timestamp``: ``time.time()`` when the frame was captured, so stale frames are caught),
plus optional extras: ``"state"`` (float64 vector a simulator can be restored from, for
replay) and ``"success"`` (a simulator's own success flag). Actions are float32 [A]
in [-1, 1]: an end-effector delta (scaled by the arm's ``max_step``) and, where the arm
has one, a gripper command.
"""

from __future__ import annotations

import abc
import importlib
import inspect
from typing import Any

import numpy as np

Observation = dict[str, Any]


class RobotFault(RuntimeError):
    """The arm (or its driver) reports a fault; the message says what and, where known, what to do."""


class CameraFault(RobotFault):
    """No fresh camera frame: the camera stopped delivering, or the frame is older than allowed."""


class Robot(abc.ABC):
    """Implement this for an arm (see README "Deploying on a real arm" for a 30-line example)."""

    name: str = "robot"

    @property
    @abc.abstractmethod
    def observation_features(self) -> dict[str, Any]:
        """``{"image": (H, W, 3), "proprio": (P,)}``: shapes of what ``get_observation`` returns."""

    @property
    @abc.abstractmethod
    def action_features(self) -> dict[str, Any]:
        """``{"action": (A,)}``: the shape of what ``send_action`` takes."""

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    @abc.abstractmethod
    def connect(self, calibrate: bool = True) -> None: ...

    @abc.abstractmethod
    def disconnect(self) -> None: ...

    @abc.abstractmethod
    def get_observation(self) -> Observation: ...

    @abc.abstractmethod
    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Command one control step; returns the action actually sent (after the arm's own clipping)."""

    @abc.abstractmethod
    def reset(self) -> Observation:
        """Move to the home pose (blocking) and return the first observation of an episode."""

    def hold(self) -> None:
        """Stop moving and hold the current pose. The default sends a zero delta."""
        self.send_action(np.zeros(self.action_features["action"], dtype=np.float32))

    def set_task(self, task: Any) -> None:
        """Simulated robots switch to a task here; a real arm's task is the scene in front of it."""

    def describe(self) -> dict[str, Any]:
        """JSON-able description stored in deploy files (robot name, features, driver settings)."""
        return {"robot": self.name, "observation_features": _jsonable(self.observation_features),
                "action_features": _jsonable(self.action_features)}

    def __enter__(self) -> "Robot":
        if not self.is_connected:
            self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.is_connected:
            self.disconnect()


def _jsonable(features: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in features.items()}


def check_observation(obs: Observation, features: dict[str, Any]) -> None:
    """A driver bug (wrong shape, dtype, NaN proprio) gets a message naming the key, not a crash in the policy."""
    for key in ("image", "proprio", "timestamp"):
        if key not in obs:
            raise RobotFault(f"observation lacks {key!r}; a Robot's get_observation must return image, proprio and timestamp")
    image = np.asarray(obs["image"])
    if image.dtype != np.uint8 or image.shape != tuple(features["image"]):
        raise RobotFault(f"observation image is {image.dtype} {image.shape}, expected uint8 {tuple(features['image'])}")
    proprio = np.asarray(obs["proprio"])
    if proprio.shape != tuple(features["proprio"]) or not np.all(np.isfinite(proprio)):
        raise RobotFault(f"observation proprio {proprio.tolist()} is not a finite vector of shape {tuple(features['proprio'])}")


def load_object(spec: str, what: str) -> Any:
    """``"module:attr"`` -> the object; a bad spec gets a message naming ``what`` it was meant to be."""
    if ":" not in spec:
        raise ValueError(f"{what} {spec!r} must be 'module:name'")
    module_name, attr = spec.split(":", 1)
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load {what} {spec!r}: {err}") from err


def reset_robot(robot: Robot, seed: int | None = None) -> Observation:
    """``robot.reset(seed=seed)`` where the robot takes a seed (simulators), else ``robot.reset()``."""
    if seed is not None and "seed" in inspect.signature(robot.reset).parameters:
        return robot.reset(seed=seed)
    return robot.reset()
