"""Task families for meta-learning from pixels: ``make_family(name, **kwargs)``.

``name`` is a built-in family (``point``, ``push``, ``door``), an installed entry point of the
group ``vision_gmps.families``, or ``"package.module:Class"`` (see ``robot_envs.plugins``).
"""

from __future__ import annotations

from typing import Any

from robot_envs.base import SPLITS, Task, TaskFamily
from robot_envs.plugins import FAMILY_GROUP, constructor_params, installed, resolve

# name -> "module:Class". Imported lazily: robosuite takes seconds to import and
# the point family must not pay for it.
FAMILIES: dict[str, str] = {
    "point": "robot_envs.point:PointFamily",
    "push": "robot_envs.push:PushFamily",
    "door": "robot_envs.door:DoorFamily",
}


def available_families() -> dict[str, str]:
    """Built-in and installed (entry-point) families: ``{name: "module:Class"}``."""
    return installed(FAMILY_GROUP, FAMILIES)


def family_class(name: str) -> type[TaskFamily]:
    """The class behind a family name or ``module:Class``; an unknown name lists what is installed."""
    return resolve(FAMILY_GROUP, name, FAMILIES, kind="task family", base=TaskFamily)


def make_family(name: str, **kwargs: Any) -> TaskFamily:
    """Build a task family by name; unknown names and keyword arguments get a clear error."""
    cls = family_class(name)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad options for task family {name!r}: {err}; it accepts "
                         f"{sorted(constructor_params(cls))} (set them as env.kwargs.NAME=VALUE)") from err


__all__ = ["FAMILIES", "SPLITS", "Task", "TaskFamily", "available_families", "family_class", "make_family"]
