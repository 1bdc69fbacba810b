"""Scripted experts that read privileged state; they also label states for DAgger.

An expert maps one env's ``info["state"]`` (a dict of arrays) to an action in
[-1, 1]. ``expert_for(family)`` builds the expert a family declares, with the settings the
family hands it; ``make_expert(name)`` builds one by name (built in, an entry point of the group
``vision_gmps.experts``, or ``"module:Class"``). ``expert.act_batch`` labels many states at once
(the DAgger relabelling path).
"""

from __future__ import annotations

from typing import Any

from demos.scripted.base import ScriptedExpert
from robot_envs.base import TaskFamily
from robot_envs.plugins import EXPERT_GROUP, installed, resolve

EXPERTS: dict[str, str] = {
    "point": "demos.scripted.point:PointExpert",
    "push": "demos.scripted.push:PushExpert",
    "door": "demos.scripted.door:DoorExpert",
}


def make_expert(name: str, **kwargs: Any) -> ScriptedExpert:
    """An expert by name or ``module:Class``; an unknown name lists the installed experts."""
    cls = resolve(EXPERT_GROUP, name, EXPERTS, kind="scripted expert", base=ScriptedExpert)
    return cls(**kwargs)


def expert_name(family: TaskFamily) -> str:
    """The expert a family declares (``TaskFamily.expert``), else the one registered under its name."""
    return family.expert or family.name


def has_expert(family: TaskFamily) -> bool:
    name = expert_name(family)
    return ":" in name or name in installed(EXPERT_GROUP, EXPERTS)


def expert_for(family: TaskFamily) -> ScriptedExpert:
    """The family's scripted expert, built with the settings the family hands it (``expert_kwargs``)."""
    return make_expert(expert_name(family), **family.expert_kwargs())


__all__ = ["EXPERTS", "ScriptedExpert", "expert_for", "expert_name", "has_expert", "make_expert"]
