"""``vgmps demo``: the README's main job. Meta-train, adapt on held-out tasks, write a report.

Its defaults live in ``configs/demo.yaml`` and are sized for a 2-core machine
with no GPU; any key can be overridden on the command line as for ``train``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from vision_gmps.adapt import adapt
from vision_gmps.config import load_config
from vision_gmps.report import write_report
from vision_gmps.runs import setup_logging
from vision_gmps.train import train

log = logging.getLogger("vision_gmps")


def run_demo(cfg: DictConfig) -> Path:
    trainer = train(cfg)
    run_dir = trainer.run_dir
    adapt_cfg = cfg.copy()
    with open_dict(adapt_cfg):
        adapt_cfg.adapt.checkpoint = str(run_dir / "checkpoints" / "last.pt")
        adapt_cfg.run_dir = str(run_dir / "adapt")
    results = adapt(adapt_cfg)
    summary = OmegaConf.to_yaml(
        {"env": OmegaConf.to_container(cfg.env), "algo": OmegaConf.to_container(cfg.algo),
         "train.iterations": cfg.train.iterations, "adapt": OmegaConf.to_container(cfg.adapt)}
    )
    report = write_report(
        run_dir,
        f"{cfg.algo.name.upper()} on {cfg.env.family}: meta-train, then adapt on held-out tasks",
        results,
        num_tasks=cfg.adapt.num_tasks * cfg.adapt.eval_episodes,
        env_episodes=trainer.env_episodes,
        video=run_dir / "adapt" / "task0_before_after.mp4",
        config_summary=summary,
        inner_steps=cfg.algo.inner_steps,
    )
    log.info("report: %s", report)
    return report


def demo_main(argv: list[str]) -> int:
    setup_logging()
    run_demo(load_config(argv, config_name="demo"))
    return 0
