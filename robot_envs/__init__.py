"""Task families for meta-learning from pixels: ``make_family("point" | "push" | "door", **kwargs)``."""

from __future__ import annotations

import importlib
from typing import Any

from robot_envs.base import SPLITS, Task, TaskFamily

# name -> "module:Class". Imported lazily: robosuite takes seconds to import and
# the point family must not pay for it.
FAMILIES: dict[str, str] = {
    "point": "robot_envs.point:PointFamily",
    "push": "robot_envs.push:PushFamily",
    "door": "robot_envs.door:DoorFamily",
}


def make_family(name: str, **kwargs: Any) -> TaskFamily:
    """Build a task family by name; unknown names and keyword arguments get a clear error."""
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; available: {sorted(FAMILIES)}")
    module_name, class_name = FAMILIES[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad options for task family {name!r}: {err}") from err


__all__ = ["FAMILIES", "SPLITS", "Task", "TaskFamily", "make_family"]
