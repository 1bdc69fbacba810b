"""``vgmps train``: meta-train with the composed config; everything lands in the run folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig

from robot_envs.errors import UserError
from vision_gmps import distributed
from vision_gmps.checkpoint import CheckpointError, experiment_diff, resume_checkpoint
from vision_gmps.checks import check_settings
from vision_gmps.config import load_config
from vision_gmps.distributed import Ranks, init_from_environment
from vision_gmps.run_logging import NullLogger, RunLogger
from vision_gmps.runs import prepare_run_dir, setup_logging
from vision_gmps.trainer import MetaTrainer, resolve_device

log = logging.getLogger("vision_gmps")


def train(cfg: DictConfig) -> MetaTrainer:
    """Meta-train; under ``torchrun`` with several processes, data-parallel (``vision_gmps.distributed``)."""
    check_settings(cfg, "train")
    ranks, _ = init_from_environment(resolve_device(cfg.device))  # device=cuda without one: refused here
    resume_from = None
    if cfg.resume and cfg.run_dir:  # refuse a changed experiment before the run folder is touched
        resume_from = resume_checkpoint(Path(cfg.run_dir), bool(cfg.get("resume_fallback")))
        if diffs := experiment_diff(cfg, resume_from[1]):
            raise CheckpointError(f"resume=true, but the experiment differs from the checkpoint's ({'; '.join(diffs)}); "
                                  f"resume with the same settings, or start a new run in another run_dir")
    run_dir = _run_dir(cfg, ranks)
    log.info("run folder: %s", run_dir)
    trainer = MetaTrainer(cfg, run_dir, ranks)
    logger = RunLogger(run_dir, cfg, "train") if ranks.is_main else NullLogger()
    ok = False
    try:
        final = trainer.run(logger, resume=bool(cfg.resume), resume_from=resume_from)
        if ranks.is_main:
            log.info("done after %d iterations, %d meta-training env episodes: %s", trainer.iteration,
                     final.get("env_episodes", trainer.env_episodes), {k: round(v, 3) for k, v in final.items()})
        logger.log_artifact(run_dir / "checkpoints" / "last.pt")
        ok = True
    finally:
        logger.finish()
        trainer.sampler.close()
        distributed.shutdown(ok)
    return trainer


def _run_dir(cfg: DictConfig, ranks: Ranks) -> Path:
    """Rank 0 prepares the run folder (or refuses it); the other ranks learn its path, or the refusal."""
    if not ranks.active:
        return prepare_run_dir(cfg, "train")
    if not ranks.is_main:
        os.environ.setdefault("TQDM_DISABLE", "1")  # one set of progress bars, rank 0's
    answer: tuple[str, str] = ("", "")
    if ranks.is_main:
        try:
            answer = (str(prepare_run_dir(cfg, "train")), "")
        except UserError as err:
            answer = ("", str(err))
    path, error = distributed.gather(answer, ranks)[0]
    if error:
        raise UserError(error)
    return Path(path)


def train_main(argv: list[str]) -> int:
    setup_logging()
    train(load_config(argv))
    return 0
