"""``vgmps demo``: the README's main job. Collect demos, meta-train, adapt on held-out tasks, write a report.

Its defaults live in ``configs/demo.yaml`` and are sized for a 2-core machine
with no GPU; any key can be overridden on the command line as for ``train``.
With ``algo.expert.source=demos`` and no ``demo_files``, the job first records
scripted-expert demonstrations of every training task into
``<run_dir>/demos/<family>-train.hdf5`` (the same file ``vgmps collect`` writes)
and meta-trains from that file, as a user with their own demos would.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from robot_envs import family_class, make_family
from vision_gmps.adapt import adapt
from vision_gmps.checks import check_settings
from vision_gmps.config import load_config
from vision_gmps.report import write_report
from vision_gmps.runs import prepare_run_dir, setup_logging
from vision_gmps.train import train

log = logging.getLogger("vision_gmps")


def collect_demos(cfg: DictConfig, run_dir: Path) -> tuple[Path, int]:
    """Record ``demo.demos_per_task`` scripted demos per training task; returns (file, episodes recorded)."""
    from demos.collect import collect_scripted

    family = make_family(cfg.env.family, **cfg.env.kwargs)
    tasks = family.sample("train", cfg.env.tasks.train, cfg.env.tasks.seed)
    path = run_dir / "demos" / f"{cfg.env.family}-train.hdf5"
    if path.exists():  # a re-run into the same folder: start the file afresh rather than append
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    stats = collect_scripted(family, tasks, cfg.demo.demos_per_task, path, noise=cfg.demo.noise, seed=cfg.seed)
    log.info("recorded %d scripted demos (%.0f%% successful) to %s", stats.demos, 100 * stats.success_rate, path)
    return path, stats.demos


def run_demo(cfg: DictConfig) -> Path:
    check_settings(cfg, "demo")
    run_dir = prepare_run_dir(cfg, "train")
    cfg = cfg.copy()
    demo_episodes = 0
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
        if cfg.algo.name in ("gmps", "bc") and cfg.algo.expert.source == "demos" and not cfg.algo.expert.demo_files:
            path, demo_episodes = collect_demos(cfg, run_dir)
            cfg.algo.expert.demo_files = [str(path)]
    trainer = train(cfg)
    adapt_cfg = cfg.copy()
    with open_dict(adapt_cfg):
        adapt_cfg.adapt.checkpoint = str(run_dir / "checkpoints" / "last.pt")
        adapt_cfg.run_dir = str(run_dir / "adapt")
    results = adapt(adapt_cfg)
    summary = OmegaConf.to_yaml(
        {"env": OmegaConf.to_container(cfg.env), "policy": OmegaConf.to_container(cfg.policy),
         "algo": OmegaConf.to_container(cfg.algo), "train.iterations": cfg.train.iterations,
         "adapt": OmegaConf.to_container(cfg.adapt)}
    )
    report = write_report(
        run_dir,
        f"{cfg.algo.name.upper()} on {cfg.env.family}: meta-train, then adapt on held-out tasks",
        results,
        env_episodes=trainer.env_episodes + demo_episodes,
        video=run_dir / "adapt" / "task0_before_after.mp4",
        sheet=run_dir / "adapt" / "after_adaptation_sheet.png",
        config_summary=summary,
        inner_steps=cfg.algo.inner_steps,
        demo_episodes=demo_episodes,
        units=family_class(cfg.env.family).step_metric_units,
    )
    log.info("report: %s", report)
    return report


def demo_main(argv: list[str]) -> int:
    setup_logging()
    run_demo(load_config(argv, config_name="demo"))
    return 0
