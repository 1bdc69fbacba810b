"""``vgmps adapt CHECKPOINT.pt [KEY=VALUE ...]``: adapt a meta-trained policy to held-out tasks on reward only.

The env, policy, algo, adapt and sampler settings come from the checkpoint's
experiment, with the command line's keys layered on top (``vision_gmps.adapt_setup``);
an env that does not fit the checkpoint is refused before any rollout. Results go to
``run_dir`` (default: ``<checkpoint run>/adapt``): the table with 95% intervals, paired
counts and gains (Markdown, JSON, per-task JSON; see ``vision_gmps.evaluation``), with
``adapt.control=true`` the reward-shuffled control next to it, an MP4 of one task
before/after adaptation and a contact sheet of several tasks after it, both filmed
at ``adapt.video.size`` with the hidden goal drawn for the viewer only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from robot_envs import make_family
from vision_gmps.adapt_setup import adapt_argv, check_env_fits, describe_sources, layer_config
from vision_gmps.adaptation import AdaptationResult, exploration_for, natural_scale_of, run_adaptation
from vision_gmps.checkpoint import load_checkpoint, policy_from_checkpoint
from vision_gmps.checks import check_settings
from vision_gmps.config import ConfigError, load_config
from vision_gmps.rollouts import Sampler
from vision_gmps.run_logging import RunLogger
from vision_gmps.runs import setup_logging
from vision_gmps.evaluation import CONTROL, format_interval, protocol_rows, with_unit
from vision_gmps.video import write_mp4
from vision_gmps.viewer import before_after_clip, contact_sheet, eval_reset_seed, replay_views

log = logging.getLogger("vision_gmps")


def adapt(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, AdaptationResult]:
    """Adapt ``cfg.adapt.checkpoint`` on held-out tasks; ``overrides`` are the command line's KEY=VALUEs.

    The checkpoint's experiment supplies env/policy/algo/adapt/sampler; keys the caller set
    (named in ``overrides`` or differing from the defaults) are layered on top. Every check
    runs before anything is written to the run folder.
    """
    if not cfg.adapt.checkpoint:
        raise ConfigError("vgmps adapt needs a checkpoint: vgmps adapt runs/<run>/checkpoints/last.pt "
                          "(or adapt.checkpoint=PATH)")
    ckpt_path = Path(cfg.adapt.checkpoint)
    state = load_checkpoint(ckpt_path)
    trained = OmegaConf.create(state["config_yaml"])
    cfg, given = layer_config(cfg, trained, overrides)
    acfg = cfg.adapt
    check_settings(cfg, "adapt")
    if cfg.torch_threads:
        torch.set_num_threads(int(cfg.torch_threads))
    policy, step_sizes = policy_from_checkpoint(state)
    exploration = exploration_for(policy, acfg, "adapt.")  # a wrong length is refused before any env starts
    check_env_fits(state, ckpt_path, cfg.env.family)
    family = make_family(cfg.env.family, **cfg.env.kwargs)
    check_env_fits(state, ckpt_path, family.name, family.horizon)
    tasks = family.sample(acfg.split, acfg.num_tasks, cfg.env.tasks.seed)
    sampler = Sampler.from_config(family, cfg.sampler)
    try:
        space = sampler.vec.single_observation_space
        shapes = {"image": space["image"].shape, "proprio": space["proprio"].shape,
                  "action": sampler.vec.single_action_space.shape}
        check_env_fits(state, ckpt_path, family.name, family.horizon, shapes)
    except Exception:
        sampler.close()
        raise
    log.info(describe_sources(cfg, given, ckpt_path))
    run_dir = Path(cfg.run_dir) if cfg.run_dir else ckpt_path.parent.parent / "adapt"
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "adapt_metrics.jsonl").exists():  # a new evaluation replaces the old one; never mix the two
        log.warning("replacing the previous adapt results in %s (run_dir=... keeps them)", run_dir)
        (run_dir / "adapt_metrics.jsonl").unlink()
    (run_dir / "adapt_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    fixed = acfg.fixed_step_size if acfg.fixed_step_size is not None else trained.algo.inner_lr
    modes = {"learned": step_sizes.as_dict(float(acfg.get("learned_step_scale", 1.0))), "fixed": step_sizes.fixed(fixed),
             "natural": step_sizes.as_dict()}  # natural: a natural-gradient step on the output layer (unused sizes)
    chosen = ["learned", "fixed"] if acfg.step_size == "both" else [acfg.step_size]
    logger = RunLogger(run_dir, cfg, "adapt")
    results: dict[str, AdaptationResult] = {}
    try:
        control = bool(acfg.get("control", False))  # the reward-shuffled control, with the first mode's step sizes
        for i, mode in enumerate(chosen):
            log.info("adapting %s on %d %s tasks x %d starts, %d steps, %s%s", state["algo"], len(tasks), acfg.split,
                     acfg.eval_episodes, acfg.steps, mode, " and the reward-shuffled control" if control and i == 0 else "")
            results[mode] = run_adaptation(
                policy, {k: v.detach() for k, v in modes[mode].items()}, sampler, tasks, acfg.steps,
                acfg.rollouts_per_task, trained.algo.gamma, trained.algo.baseline, acfg.eval_episodes, cfg.seed,
                progress=True, with_control=control and i == 0, shrink=bool(acfg.get("shrink_steps", False)),
                natural_scale=natural_scale_of(acfg), **exploration,
            )
        if control:
            results[CONTROL] = results[chosen[0]].control
        for mode, result in results.items():
            for row in result.rows:
                logger.log({f"adapt_{mode}/{k}": v for k, v in row.items()}, step=int(row["step"]))
            logger.log_table(f"adapt_{mode}/table", result.rows)
        write_results(run_dir, results)
        video = write_viewer_outputs(run_dir, cfg, family, policy, tasks, results[chosen[0]])
        logger.log_video("adapt/task0_before_after", video)
        log.info("results and video in %s", run_dir)
        print_results(results, state["algo"], acfg.split, family.step_metric_units)
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
            for row in protocol_rows(r.rows, r.per_task_success, per_task_final=r.per_task_final)]
    (run_dir / "adapt_results.json").write_text(json.dumps(rows, indent=1))
    (run_dir / "adapt_results.md").write_text(markdown_table(rows))
    per_task = {mode: {"per_task_success": r.per_task_success.tolist(), "tasks": [t.task_id for t in r.first_eval.tasks],
                       "reward_source": None if r.reward_source is None else r.reward_source.tolist(),
                       **{f"per_task_final_{k}": v.tolist() for k, v in r.per_task_final.items()}}
                for mode, r in results.items()}
    (run_dir / "adapt_per_task.json").write_text(json.dumps(per_task))


def markdown_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_results(results: dict[str, AdaptationResult], algo: str, split: str = "test",
                  units: Mapping[str, str] | None = None) -> None:
    for mode, result in results.items():
        r0 = result.rows[0]
        n_tasks = len(result.first_eval.tasks)
        table = Table(title=f"{algo}: {split} split, {mode}, {n_tasks} tasks x {result.first_eval.num_episodes // n_tasks} starts")
        for c in ("step", "success [95% Wilson]", "bootstrap over tasks", "improved/same/worse", "gain [95% paired bootstrap]",
                  *[with_unit(k, units) for k in r0 if k.startswith("final_")], "adaptation episodes"):
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
    argv = adapt_argv(argv)
    adapt(load_config(argv), overrides=argv)
    return 0
