"""Find a family, expert or robot class by name: built in, an installed entry point, or ``module:Class``.

A user's own package plugs in without a wrapper and without editing ours, in either way:

* **entry points** in its ``pyproject.toml``, found by every ``vgmps`` subcommand once installed::

      [project.entry-points."vision_gmps.families"]
      slide = "my_pkg.tasks:SlideFamily"

* **``module:Class``** anywhere a name is taken, e.g. ``vgmps train env.family=my_pkg.tasks:SlideFamily``
  (the module must be importable: installed, or on ``PYTHONPATH``).

Built-in names win over entry points of the same name, so an installed package cannot silently
replace ``push``. Importing a module named this way runs that module's code, exactly as
``import my_pkg`` would: names come from the user's config or installed packages, never from
inside a data file we load.
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from typing import Any

FAMILY_GROUP = "vision_gmps.families"
EXPERT_GROUP = "vision_gmps.experts"
ROBOT_GROUP = "vision_gmps.robots"


class PluginError(ValueError):
    """A name that resolves to nothing, or a ``module:Class`` that does not import."""


def is_import_path(name: str) -> bool:
    """``"pkg.mod:Class"`` (an explicit import path) rather than a registered name."""
    return ":" in name


def installed(group: str, builtins: dict[str, str] | None = None) -> dict[str, str]:
    """Every name available in ``group``: ``{name: "module:Class"}``, built-ins first."""
    found = {ep.name: ep.value for ep in entry_points(group=group)}
    return {**found, **(builtins or {})}


def load_object(path: str, kind: str = "object") -> Any:
    """Import ``"module:attr.sub"`` and return the attribute; errors name the path and what failed."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise PluginError(f"{kind} {path!r} is not of the form 'package.module:ClassName'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise PluginError(f"cannot import module {module_name!r} for {kind} {path!r}: {err}; "
                          "install the package (pip install -e ...) or add its folder to PYTHONPATH") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"module {module_name!r} has no attribute {attr!r} (for {kind} {path!r})")
        obj = getattr(obj, part)
    return obj


def resolve(group: str, name: str, builtins: dict[str, str] | None = None, kind: str = "plugin",
            base: type | None = None) -> Any:
    """The class named ``name`` in ``group``, checked to subclass ``base`` when given.

    ``name`` is a built-in name, an entry-point name of ``group``, or ``"module:Class"``.
    An unknown name gets an error listing everything installed, and how to add one. The
    ``base`` check matters because names can come from a checkpoint's or demo file's config:
    only a real family/expert/robot class is ever called, never an arbitrary function.
    """
    obj = _lookup(group, name, builtins, kind)
    if base is not None and not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginError(f"{kind} {name!r} resolves to {obj!r}, which is not a subclass of "
                          f"{base.__module__}.{base.__qualname__}")
    return obj


def _lookup(group: str, name: str, builtins: dict[str, str] | None, kind: str) -> Any:
    if is_import_path(name):
        return load_object(name, kind)
    available = installed(group, builtins)
    if name not in available:
        raise PluginError(
            f"unknown {kind} {name!r}; available: {sorted(available)}. A {kind} from your own package: "
            f"'your_pkg.module:ClassName', or an entry point in the group {group!r}"
        )
    if builtins and name in builtins:
        return load_object(builtins[name], kind)
    (ep,) = [ep for ep in entry_points(group=group) if ep.name == name][:1]
    try:
        return ep.load()
    except (ImportError, AttributeError) as err:
        raise PluginError(f"{kind} {name!r} is installed as {ep.value!r} (entry point group {group!r}) "
                          f"but failed to load: {err}") from err


def constructor_params(cls: type) -> set[str]:
    """Keyword names a class's constructor accepts, following ``**kwargs`` up to the base classes."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters
        names |= {n for n, p in params.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return names
