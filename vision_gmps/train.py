"""``vgmps train``: meta-train with the composed config; everything lands in the run folder."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from vision_gmps.config import load_config
from vision_gmps.run_logging import RunLogger
from vision_gmps.runs import prepare_run_dir, setup_logging
from vision_gmps.trainer import MetaTrainer

log = logging.getLogger("vision_gmps")


def train(cfg: DictConfig) -> MetaTrainer:
    run_dir = prepare_run_dir(cfg, "train")
    log.info("run folder: %s", run_dir)
    trainer = MetaTrainer(cfg, run_dir)
    logger = RunLogger(run_dir, cfg, "train")
    try:
        final = trainer.run(logger, resume=bool(cfg.resume))
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
