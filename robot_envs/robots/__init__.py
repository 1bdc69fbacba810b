"""Robots the deploy loop can drive: ``make_robot("sim" | "socket" | "lerobot" | "module:Class", **kwargs)``.

Nothing here imports ``demos`` or ``vision_gmps``: a driver on the arm's computer needs only this package.
"""

from __future__ import annotations

from typing import Any

from robot_envs.robots.base import CameraFault, Observation, Robot, RobotFault, load_object

# name -> "module:Class"; imported lazily so the robot server does not pay for torch or robosuite.
ROBOTS: dict[str, str] = {
    "sim": "robot_envs.robots.sim:SimRobot",
    "socket": "robot_envs.robots.remote:SocketRobot",
    "lerobot": "robot_envs.robots.lerobot:LeRobotAdapter",
}


def resolve_robot_class(name: str) -> type:
    """A builtin robot name or a ``module:Class`` string -> the class (one place, so plugins can extend it)."""
    target = ROBOTS.get(name, name)
    if ":" not in target:
        raise ValueError(f"unknown robot {name!r}; use one of {sorted(ROBOTS)} or 'module:Class' for your own Robot")
    cls = load_object(target, "robot")
    if not (isinstance(cls, type) and issubclass(cls, Robot)):
        raise ValueError(f"robot {name!r}: {target} is not a subclass of robot_envs.robots.Robot")
    return cls


def make_robot(name: str, **kwargs: Any) -> Robot:
    cls = resolve_robot_class(name)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad options for robot {name!r}: {err}") from err


__all__ = ["CameraFault", "Observation", "ROBOTS", "Robot", "RobotFault", "make_robot", "resolve_robot_class"]
