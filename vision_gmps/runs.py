"""Run folders: where a job writes its resolved config, metrics, checkpoints and report."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("vision_gmps")


def setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)


def prepare_run_dir(cfg: DictConfig, job: str) -> Path:
    """Create (or, on resume, reuse) the run folder and write the resolved config into it."""
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
    elif cfg.get("resume"):
        raise ValueError("resume=true needs run_dir=<folder of the run to continue>")
    else:
        family = str(cfg.env.family).rsplit(":", 1)[-1]  # module:Class -> Class
        run_dir = Path("runs") / f"{family}-{cfg.algo.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{job}_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return run_dir
