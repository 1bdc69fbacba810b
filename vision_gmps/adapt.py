"""``vgmps adapt checkpoint=PATH``: adapt a meta-trained policy to held-out tasks on reward only.

The env settings come from the checkpoint unless the command line names an
``env``, in which case they must match it. Results go to ``run_dir`` (default:
``<checkpoint run>/adapt``): the table with 95% intervals, paired counts and gains
(Markdown, JSON, per-task JSON; see ``vision_gmps.evaluation``), with
``adapt.control=true`` the reward-shuffled control next to it, an MP4 of one task
before/after adaptation and a contact sheet of several tasks after it, both filmed
at ``adapt.video.size`` with the hidden goal drawn for the viewer only.
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
from vision_gmps.evaluation import CONTROL, format_interval, protocol_rows
from vision_gmps.video import write_mp4
from vision_gmps.viewer import before_after_clip, contact_sheet, eval_reset_seed, replay_views

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
    sampler = Sampler(family, cfg.sampler.num_envs, cfg.sampler.backend)
    logger = RunLogger(run_dir, cfg, "adapt")
    results: dict[str, AdaptationResult] = {}
    try:
        runs = [(mode, modes[mode], False) for mode in chosen]
        if acfg.get("control", False):  # the reward-shuffled control, with the first mode's step sizes
            runs.append((CONTROL, modes[chosen[0]], True))
        for mode, sizes, shuffled in runs:
            log.info("adapting %s on %d %s tasks x %d starts, %d steps, %s", state["algo"], len(tasks), acfg.split,
                     acfg.eval_episodes, acfg.steps, mode)
            results[mode] = run_adaptation(
                policy, {k: v.detach() for k, v in sizes.items()}, sampler, tasks, acfg.steps,
                acfg.rollouts_per_task, trained.algo.gamma, trained.algo.baseline, acfg.eval_episodes, cfg.seed,
                progress=True, shuffle_rewards=shuffled,
            )
            for row in results[mode].rows:
                logger.log({f"adapt_{mode}/{k}": v for k, v in row.items()}, step=int(row["step"]))
            logger.log_table(f"adapt_{mode}/table", results[mode].rows)
        write_results(run_dir, results)
        video = write_viewer_outputs(run_dir, cfg, family, policy, tasks, results[chosen[0]])
        logger.log_video("adapt/task0_before_after", video)
        log.info("results and video in %s", run_dir)
        print_results(results, state["algo"], acfg.split)
    finally:
        logger.finish()
        sampler.close()
    return results


def write_viewer_outputs(run_dir: Path, cfg: DictConfig, family, policy, tasks: list, result: AdaptationResult) -> Path:
    """Before/after MP4 of held-out task 0 and a contact sheet of several tasks after adaptation (viewer camera)."""
    vcfg = cfg.adapt.get("video") or {}
    size, camera, sheet = int(vcfg.get("size", 256)), vcfg.get("camera"), int(vcfg.get("sheet_tasks", 6))
    steps = len(result.rows) - 1
    seed_of = lambda i: eval_reset_seed(result.eval_seed, i, int(cfg.adapt.eval_episodes))  # noqa: E731
    before = {k: v.detach() for k, v in policy.params().items()}
    jobs = [(tasks[0], before, seed_of(0))] + [(tasks[i], result.final_params[i], seed_of(i)) for i in range(min(sheet, len(tasks)))]
    views = replay_views(family, policy, jobs, size=size, camera=camera)
    contact_sheet(views[1:], run_dir / "after_adaptation_sheet.png",
                  f"held-out tasks after {steps} adaptation steps (goal drawn for the viewer only)")
    return write_mp4(run_dir / "task0_before_after.mp4", before_after_clip(views[0], views[1], steps))


def write_results(run_dir: Path, results: dict[str, AdaptationResult]) -> None:
    rows = [{"step_size": mode, **row} for mode, r in results.items()
            for row in protocol_rows(r.rows, r.per_task_success)]
    (run_dir / "adapt_results.json").write_text(json.dumps(rows, indent=1))
    (run_dir / "adapt_results.md").write_text(markdown_table(rows))
    per_task = {mode: {"per_task_success": r.per_task_success.tolist(), "tasks": [t.task_id for t in r.first_eval.tasks],
                       "reward_source": None if r.reward_source is None else r.reward_source.tolist()}
                for mode, r in results.items()}
    (run_dir / "adapt_per_task.json").write_text(json.dumps(per_task))


def markdown_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_results(results: dict[str, AdaptationResult], algo: str, split: str = "test") -> None:
    for mode, result in results.items():
        r0 = result.rows[0]
        n_tasks = len(result.first_eval.tasks)
        table = Table(title=f"{algo}: {split} split, {mode}, {n_tasks} tasks x {result.first_eval.num_episodes // n_tasks} starts")
        for c in ("step", "success [95% Wilson]", "bootstrap over tasks", "improved/same/worse", "gain [95% paired bootstrap]",
                  *[k for k in r0 if k.startswith("final_")], "adaptation episodes"):
            table.add_column(c, justify="right")
        for row in protocol_rows(result.rows, result.per_task_success):
            table.add_row(
                str(row["step"]), format_interval(row["success"], (row["success_wilson_low"], row["success_wilson_high"])),
                f"[{row['success_boot_low']:.2f}, {row['success_boot_high']:.2f}]",
                f"{row['improved']}/{row['same']}/{row['worse']}",
                format_interval(row["gain"], (row["gain_low"], row["gain_high"])),
                *[f"{row[k]:.3f}" for k in r0 if k.startswith("final_")], str(row["episodes"]),
            )
        Console().print(table)


def adapt_main(argv: list[str]) -> int:
    setup_logging()
    adapt(load_config(argv), env_from_command_line=any(a.split("=")[0].lstrip("+~").startswith("env") for a in argv))
    return 0
