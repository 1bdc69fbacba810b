"""Scripted experts that read privileged state; they also label states for DAgger.

An expert maps one env's ``info["state"]`` (a dict of arrays) to an action in
[-1, 1]. ``make_expert(family_name)`` returns one; ``expert.act_batch`` labels
many states at once (the DAgger relabelling path).
"""

from __future__ import annotations

import importlib

from demos.scripted.base import ScriptedExpert

EXPERTS: dict[str, str] = {
    "point": "demos.scripted.point:PointExpert",
    "push": "demos.scripted.push:PushExpert",
    "door": "demos.scripted.door:DoorExpert",
}


def make_expert(family: str, **kwargs) -> ScriptedExpert:
    if family not in EXPERTS:
        raise ValueError(f"no scripted expert for task family {family!r}; available: {sorted(EXPERTS)}")
    module_name, class_name = EXPERTS[family].split(":")
    return getattr(importlib.import_module(module_name), class_name)(**kwargs)


__all__ = ["EXPERTS", "ScriptedExpert", "make_expert"]
