"""Run folders: where a job writes its resolved config, metrics, checkpoints and report."""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from robot_envs.errors import UserError

log = logging.getLogger("vision_gmps")
# What a training run leaves in its folder; ``force=true`` deletes these before starting afresh.
RUN_OUTPUTS = ("checkpoints", "train_metrics.jsonl", "adapt", "report.md")


def setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)


def previous_run(run_dir: Path) -> list[str]:
    """The outputs of an earlier training run in ``run_dir`` (empty: nothing to lose)."""
    found = [name for name in RUN_OUTPUTS[1:] if (run_dir / name).exists()]
    if any((run_dir / "checkpoints").glob("*.pt")):
        found.insert(0, "checkpoints/")
    return found


def prepare_run_dir(cfg: DictConfig, job: str) -> Path:
    """Create (or, on resume, reuse) the run folder and write the resolved config into it.

    A folder holding another training run is refused unless the user continues it
    (``resume=true``) or asks to start afresh (``force=true``), so nothing is overwritten or mixed.
    """
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
    elif cfg.get("resume"):
        raise UserError("resume=true needs run_dir=<folder of the run to continue>")
    else:
        family = str(cfg.env.family).rsplit(":", 1)[-1]  # module:Class -> Class
        run_dir = Path("runs") / f"{family}-{cfg.algo.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if job == "train" and not cfg.get("resume") and (found := previous_run(run_dir)):
        if not cfg.get("force"):
            raise UserError(f"run_dir={run_dir} already holds a run ({', '.join(found)}); add resume=true to continue it, "
                            f"--force (force=true) to delete it and start afresh, or choose another run_dir")
        log.warning("force=true: deleting the previous run's %s in %s", ", ".join(found), run_dir)
        for name in RUN_OUTPUTS:
            target = run_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{job}_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return run_dir
