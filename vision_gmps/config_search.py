"""Where configs come from: the package's ``configs/`` plus the user's folders on ``VGMPS_CONFIG_PATH``.

``VGMPS_CONFIG_PATH`` is a list of folders (separated like ``PATH``: ``:`` on Linux/macOS) laid
out like ``configs/`` (``env/reach.yaml``, ``experiment/reach_cpu.yaml``, ...). They are added to
hydra's search path *after* the package's folder, so ``env=reach`` finds the user's file and
every built-in config stays available (a user file of the same name as ours does not replace it).

Two command-line conveniences are rewritten here before hydra sees them:

* ``env.family=NAME`` alone selects the env config of that name when there is one (ours or
  the user's), else ``env=family_defaults`` (no kwargs): the family's own constructor defaults,
  never point's kwargs passed to another family.
* ``env.kwargs.KEY=VALUE`` and ``env.kwargs={...}`` may name keys the env config does not list
  (the family's constructor checks them, naming the keys it accepts), so they need no ``+``.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "VGMPS_CONFIG_PATH"
FAMILY_DEFAULTS = "family_defaults"  # configs/env/family_defaults.yaml: a family with its own defaults


def user_config_dirs() -> list[Path]:
    """The folders on ``VGMPS_CONFIG_PATH``; a missing folder is an error naming it."""
    dirs = [Path(p).expanduser().resolve() for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        from vision_gmps.config import ConfigError  # here, not at the top: config.py imports this module

        raise ConfigError(f"{ENV_VAR} names folders that do not exist: {missing}; fix or unset {ENV_VAR}")
    return dirs


def search_path_overrides(overrides: list[str]) -> list[str]:
    """``hydra.searchpath=[...]`` for the user's folders, unless the overrides set it already."""
    user_dirs = user_config_dirs()
    if not user_dirs or any(_key(ov) == "hydra.searchpath" for ov in overrides):
        return []
    return ["hydra.searchpath=[" + ",".join(f"file://{d}" for d in user_dirs) + "]"]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _env_config_exists(name: str, package_dir: Path, user_dirs: list[Path]) -> bool:
    return any((d / "env" / f"{name}.yaml").is_file() for d in [package_dir, *user_dirs])


def rewrite_overrides(overrides: list[str], package_dir: Path) -> list[str]:
    """Add the user folders to hydra's search path and apply the two conveniences above."""
    user_dirs = user_config_dirs()
    out = []
    for ov in overrides:
        # ``++`` sets a key whether or not the env config lists it; the family validates it.
        out.append("++" + ov if _key(ov).split(".")[:2] == ["env", "kwargs"] and not ov.startswith(("+", "~")) else ov)
    keys = [_key(ov) for ov in overrides]
    family = [ov.split("=", 1)[1] for ov in overrides if _key(ov) == "env.family" and "=" in ov]
    if family and "env" not in keys:
        name = family[-1]
        out.insert(0, f"env={name if _env_config_exists(name, package_dir, user_dirs) else FAMILY_DEFAULTS}")
    return out + search_path_overrides(overrides)
