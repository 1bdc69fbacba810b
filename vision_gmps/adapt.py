"""``vgmps adapt checkpoint=PATH``: adapt a meta-trained policy to held-out tasks on reward only.

The env settings come from the checkpoint unless the command line names an
``env``, in which case they must match it. Results (table as Markdown, JSON and
CSV, and an MP4 of one task before/after adaptation) go to ``run_dir``
(default: ``<checkpoint run>/adapt``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.table import Table

from robot_envs import make_family
from vision_gmps.adaptation import AdaptationResult, run_adaptation
from vision_gmps.checkpoint import check_compatible, load_checkpoint, policy_from_checkpoint
from vision_gmps.config import ConfigError, load_config
from vision_gmps.rollouts import Sampler
from vision_gmps.run_logging import RunLogger
from vision_gmps.runs import setup_logging
from vision_gmps.video import side_by_side, write_mp4

log = logging.getLogger("vision_gmps")
STEP_SIZE_MODES = ("learned", "fixed", "both")


def adapt(cfg: DictConfig, env_from_command_line: bool = False) -> dict[str, AdaptationResult]:
    acfg = cfg.adapt
    if not acfg.checkpoint:
        raise ConfigError("vgmps adapt needs checkpoint=<path to a .pt file>, e.g. runs/<run>/checkpoints/last.pt")
    if acfg.step_size not in STEP_SIZE_MODES:
        raise ConfigError(f"adapt.step_size={acfg.step_size!r} is not one of {STEP_SIZE_MODES}")
    if cfg.torch_threads:
        torch.set_num_threads(int(cfg.torch_threads))
    ckpt_path = Path(acfg.checkpoint)
    state = load_checkpoint(ckpt_path)
    trained = OmegaConf.create(state["config_yaml"])
    by_prefix = trained.algo.get("inner_lr_by_param")
    policy, step_sizes = policy_from_checkpoint(state, OmegaConf.to_container(by_prefix) if by_prefix else None)
    with open_dict(cfg):
        if not env_from_command_line:
            cfg.env = trained.env
        cfg.algo = trained.algo
    family = make_family(cfg.env.family, **cfg.env.kwargs)
    check_compatible(state, policy.spec, family.name, ckpt_path)
    tasks = family.sample(acfg.split, acfg.num_tasks, cfg.env.tasks.seed)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else ckpt_path.parent.parent / "adapt"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "adapt_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    fixed = acfg.fixed_step_size if acfg.fixed_step_size is not None else trained.algo.inner_lr
    modes = {"learned": step_sizes.as_dict(), "fixed": step_sizes.fixed(fixed)}
    chosen = ["learned", "fixed"] if acfg.step_size == "both" else [acfg.step_size]
    sampler = Sampler.from_config(family, cfg.sampler)
    logger = RunLogger(run_dir, cfg, "adapt")
    results: dict[str, AdaptationResult] = {}
    try:
        for mode in chosen:
            log.info("adapting %s on %d %s tasks, %d steps, %s step sizes", state["algo"], len(tasks), acfg.split, acfg.steps, mode)
            results[mode] = run_adaptation(
                policy, {k: v.detach() for k, v in modes[mode].items()}, sampler, tasks, acfg.steps,
                acfg.rollouts_per_task, trained.algo.gamma, trained.algo.baseline, acfg.eval_episodes, cfg.seed, progress=True,
            )
            for row in results[mode].rows:
                logger.log({f"adapt_{mode}/{k}": v for k, v in row.items()}, step=int(row["step"]))
            logger.log_table(f"adapt_{mode}/table", results[mode].rows)
        write_results(run_dir, results)
        clip = side_by_side(results[chosen[0]].first_eval.images[0], results[chosen[0]].last_eval.images[0])
        logger.log_video("adapt/task0_before_after", write_mp4(run_dir / "task0_before_after.mp4", clip))
        log.info("results and video in %s", run_dir)
        print_results(results, state["algo"])
    finally:
        logger.finish()
        sampler.close()
    return results


def write_results(run_dir: Path, results: dict[str, AdaptationResult]) -> None:
    rows = [{"step_size": mode, **row} for mode, r in results.items() for row in r.rows]
    (run_dir / "adapt_results.json").write_text(json.dumps(rows, indent=1))
    (run_dir / "adapt_results.md").write_text(markdown_table(rows))


def markdown_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_results(results: dict[str, AdaptationResult], algo: str) -> None:
    for mode, result in results.items():
        table = Table(title=f"{algo}: held-out adaptation ({mode} step sizes)")
        cols = list(result.rows[0])
        for c in cols:
            table.add_column(c, justify="right")
        for row in result.rows:
            table.add_row(*[f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols])
        Console().print(table)


def adapt_main(argv: list[str]) -> int:
    setup_logging()
    adapt(load_config(argv), env_from_command_line=any(a.split("=")[0].lstrip("+~").startswith("env") for a in argv))
    return 0
