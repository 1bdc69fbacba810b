"""``vgmps train``: meta-train with the composed config; everything lands in the run folder."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from vision_gmps.checkpoint import CheckpointError, experiment_diff, resume_checkpoint
from vision_gmps.checks import check_settings
from vision_gmps.config import load_config
from vision_gmps.run_logging import RunLogger
from vision_gmps.runs import prepare_run_dir, setup_logging
from vision_gmps.trainer import MetaTrainer, resolve_device

log = logging.getLogger("vision_gmps")


def train(cfg: DictConfig) -> MetaTrainer:
    check_settings(cfg, "train")
    resolve_device(cfg.device)  # device=cuda without one: refused before the run folder is made
    resume_from = None
    if cfg.resume and cfg.run_dir:  # refuse a changed experiment before the run folder is touched
        resume_from = resume_checkpoint(Path(cfg.run_dir), bool(cfg.get("resume_fallback")))
        if diffs := experiment_diff(cfg, resume_from[1]):
            raise CheckpointError(f"resume=true, but the experiment differs from the checkpoint's ({'; '.join(diffs)}); "
                                  f"resume with the same settings, or start a new run in another run_dir")
    run_dir = prepare_run_dir(cfg, "train")
    log.info("run folder: %s", run_dir)
    trainer = MetaTrainer(cfg, run_dir)
    logger = RunLogger(run_dir, cfg, "train")
    try:
        final = trainer.run(logger, resume=bool(cfg.resume), resume_from=resume_from)
        log.info("done after %d iterations, %d meta-training env episodes: %s", trainer.iteration, trainer.env_episodes,
                 {k: round(v, 3) for k, v in final.items()})
        logger.log_artifact(run_dir / "checkpoints" / "last.pt")
    finally:
        logger.finish()
        trainer.sampler.close()
    return trainer


def train_main(argv: list[str]) -> int:
    setup_logging()
    train(load_config(argv))
    return 0
