"""Compose hydra configs from ``configs/`` with command-line overrides.

We use hydra's compose API rather than ``@hydra.main`` so one ``vgmps`` entry point
can host several subcommands, each with its own primary config, and so tests can
build configs in-process. Unknown keys and unknown group options fail with
hydra's own message, which names the key and the available options.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vision_gmps.config_search import rewrite_overrides

CONFIG_DIR = Path(os.environ.get("VGMPS_CONFIG_DIR", Path(__file__).resolve().parent.parent / "configs"))


class ConfigError(ValueError):
    """A config override or file that cannot be composed; the message says which key."""


def load_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "config") -> DictConfig:
    if not CONFIG_DIR.is_dir():
        raise ConfigError(f"config folder {CONFIG_DIR} not found; set VGMPS_CONFIG_DIR to the project's configs/")
    try:
        overrides = rewrite_overrides(list(overrides), CONFIG_DIR)  # VGMPS_CONFIG_PATH, env.family / env.kwargs
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from err
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"bad config override: {err}") from err
    OmegaConf.set_struct(cfg, True)
    return cfg
