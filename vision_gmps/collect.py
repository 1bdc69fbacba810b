"""``vgmps collect``: compose the collect config (configs/collect.yaml + overrides) and record demos.

The recording itself is ``demos.cli.run_collect``; composing hydra configs belongs to this CLI
layer so that demos/ depends only on robot_envs/.
"""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

from demos.cli import COLLECT_USAGE, run_collect
from vision_gmps.config import ConfigError, load_config


def collect_main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(COLLECT_USAGE)
        return 0
    try:
        cfg = load_config(argv, config_name="collect")
    except ConfigError as err:
        print(f"vgmps collect: error: {err}", file=sys.stderr)
        return 2
    return run_collect(OmegaConf.to_container(cfg, resolve=True))
