"""Compose hydra configs from ``configs/`` with command-line overrides.

We use hydra's compose API rather than ``@hydra.main`` so one ``vgmps`` entry point
can host several subcommands, each with its own primary config, and so tests can
build configs in-process. Hydra's own messages for a typo suggest ``+key=value``,
which adds the misspelt key and silently ignores it; we instead refuse unknown
keys (``+`` included, outside ``env.kwargs``) and name the closest valid key.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from robot_envs.errors import UserError
from vision_gmps.config_search import rewrite_overrides, search_path_overrides, user_config_dirs

CONFIG_DIR = Path(os.environ.get("VGMPS_CONFIG_DIR", Path(__file__).resolve().parent.parent / "configs"))
# Keys under these prefixes may be added with ``+``: a family's constructor takes what it takes.
OPEN_PREFIXES = ("env.kwargs.",)


class ConfigError(UserError, ValueError):
    """A config override or file that cannot be composed; the message says which key."""


def flat_keys(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"algo.inner_lr": 3.0, ...}``: every leaf of a config as a dotted key."""
    out: dict[str, Any] = {}
    container = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    for key, value in container.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_keys(value, name + "."))
        else:
            out[name] = value
    return out


def closest(name: str, choices: list[str]) -> str | None:
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return match[0] if match else None


def _did_you_mean(name: str, choices: list[str]) -> str:
    guess = closest(name, choices)
    return f"; did you mean {guess}?" if guess else ""


def _compose(config_name: str, overrides: list[str], searchpath: bool = True) -> DictConfig:
    """Compose with the user's config folders on hydra's search path (``searchpath=False``: already in ``overrides``)."""
    extra = search_path_overrides(overrides) if searchpath else []
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=[*overrides, *extra])


def _group_options(group: str) -> list[str]:
    """Options of a config group (``env`` -> [door, point, push]); [] when ``group`` is not one."""
    if "." in group:
        return []
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        ours = set(GlobalHydra.instance().config_loader().get_group_options(group))
    return sorted(ours | {p.stem for d in user_config_dirs() for p in (d / group).glob("*.yaml")})


def _parse(overrides: list[str]) -> list[Any]:
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        bad = next((o for o in overrides if "=" not in o), None)
        hint = f"{bad!r} has no '='; write KEY=VALUE, e.g. train.iterations=10" if bad else str(err).splitlines()[0]
        raise ConfigError(f"cannot parse the command line: {hint}") from err


def _explain(err: Exception, parsed: list[Any], overrides: list[str], config_name: str) -> str:
    """Turn hydra's message into one naming the key, the closest valid one and the fix."""
    text = str(err)
    if m := re.search(r"Could not find '([^/']+)/([^']+)'", text):
        group, option = m.groups()
        options = _group_options(group)
        return f"{group}={option}: no such option{_did_you_mean(option, options)} (options: {', '.join(options)})"
    groups_only = [o.input_line for o in parsed if not o.is_delete() and _group_options(o.key_or_group)]
    try:
        known = flat_keys(_compose(config_name, groups_only))
    except (HydraException, OmegaConfBaseException):
        known = flat_keys(_compose(config_name, []))
    prefixes = {k.rsplit(".", i)[0] for k in known for i in range(k.count(".") + 1)}
    for o in parsed:
        value = o.value() if not o.is_delete() else None
        names = [f"{o.key_or_group}.{k}" for k in value] if isinstance(value, dict) else [o.key_or_group]
        for name in names:  # ``env.kwargs={horizonn: 10}`` has its typo inside the dict
            if name not in prefixes and not _group_options(name):
                return f"{name} is not a config key{_did_you_mean(name, sorted(prefixes))} (--help lists every key)"
    first = text.splitlines()[0]
    if "Could not override" in first:
        key = first.split("'")[1]
        return (f"cannot set {key}: give its fields one by one ({key}.NAME=VALUE)"
                if isinstance(OmegaConf.select(_compose(config_name, []), key), DictConfig) else f"cannot set {key}: {text}")
    return text.split("\nConfig search path")[0]


def load_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "config") -> DictConfig:
    if not CONFIG_DIR.is_dir():
        raise ConfigError(f"config folder {CONFIG_DIR} not found; set VGMPS_CONFIG_DIR to the project's configs/")
    overrides = list(overrides)
    parsed = _parse(overrides)
    base: dict[str, Any] | None = None
    for o in parsed:  # ``+key=`` would add a misspelt key and ignore it; only groups and open keys may be added
        if o.is_add() and not _group_options(o.key_or_group) and not o.key_or_group.startswith(OPEN_PREFIXES):
            base = base if base is not None else flat_keys(_compose(config_name, []))
            if o.key_or_group not in base:
                raise ConfigError(f"{o.key_or_group} is not a config key{_did_you_mean(o.key_or_group, sorted(base))} "
                                  f"(--help lists every key)")
    try:
        # VGMPS_CONFIG_PATH, and the env.family / env.kwargs conveniences (vision_gmps.config_search)
        cfg = _compose(config_name, rewrite_overrides(overrides, CONFIG_DIR), searchpath=False)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_explain(err, parsed, overrides, config_name)) from err
    OmegaConf.set_struct(cfg, True)
    return cfg


def format_value(value: Any) -> str:
    """A value as it is written on the command line: ``null``, ``true``, ``[16,16]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return "{}" if isinstance(value, dict) else str(value)


def config_help(config_name: str) -> str:
    """Every key of a primary config with its default, for ``vgmps SUBCOMMAND --help``."""
    cfg = _compose(config_name, [])
    groups = [g for g in ("env", "policy", "algo", "experiment") if _group_options(g)]
    lines = ["config groups (pick one with GROUP=OPTION; experiment with +experiment=OPTION):"]
    lines += [f"  {g:<10} {', '.join(_group_options(g))}" for g in groups]
    lines += ["", "keys (KEY=VALUE; defaults shown):"]
    lines += [f"  {k}={format_value(v)}" for k, v in flat_keys(cfg).items()]
    return "\n".join(lines)
