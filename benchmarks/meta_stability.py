"""Does the meta-update keep what the BC warm start learned? One run, identical seeds, per variant.

For each family and variant this trains ``--iterations`` GMPS meta-iterations after the BC warm
start and reads the training rollouts' success from ``train_metrics.jsonl``: iteration 1's
pre-update rollouts are collected right after BC, iteration k+1's after k meta-updates.

    python benchmarks/meta_stability.py --family push           # push_cpu, shrunk to fit a shared 2-core box
    python benchmarks/meta_stability.py --family door
    python benchmarks/meta_stability.py --family example        # the examples/ package (pip install -e examples/reach_family)

``--full --adapt-tasks 20`` trains each variant at the experiment's own size instead and then
adapts it on the **valid** split (never the test split: this chooses a default) with the
reward-shuffled control, so a guard that keeps the warm start but costs the adaptation gain shows:

    python benchmarks/meta_stability.py --family push --full --adapt-tasks 20 --variants none anchor
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from vision_gmps.adapt import adapt
from vision_gmps.config import load_config
from vision_gmps.evaluation import CONTROL, format_interval, protocol_rows, wilson_interval
from vision_gmps.train import train

COMMON = ["wandb.mode=disabled", "torch_threads=1", "train.eval_every=0", "train.checkpoint_every=100"]
EXPERIMENTS = {"push": "+experiment=push_cpu", "door": "+experiment=door_cpu", "example": "+experiment=reach_cpu"}
FAMILIES = {
    # push_cpu's settings (BC warm start, 30 outer steps per iteration) on fewer tasks and rollouts.
    "push": ["+experiment=push_cpu", "env.tasks.train=5", "algo.meta_batch_size=null", "algo.rollouts_per_task=20",
             "sampler.num_envs=10", "algo.dagger.enabled=false"],
    "door": ["+experiment=door_cpu", "env.tasks.train=5", "algo.rollouts_per_task=20", "sampler.num_envs=10",
             "algo.dagger.enabled=false"],
    "example": ["+experiment=reach_cpu"],
}
OFF = {"algo.outer_lr_warmup": 0, "algo.pre_update_bc_weight": 0, "algo.inner_step_calibration": 0}
VARIANTS = {name: [f"{k}={v}" for k, v in {**OFF, **on}.items()] for name, on in {
    "none": {},
    "warmup": {"algo.outer_lr_warmup": 3},
    "anchor": {"algo.pre_update_bc_weight": 1.0},
    "calibrate": {"algo.inner_step_calibration": 1.5},
    # the package default (bound 1.5 again since 2026-12-04; 3 from 12-02 to 12-04, see meta_stability.md)
    "calibrate+anchor": {"algo.inner_step_calibration": 1.5, "algo.pre_update_bc_weight": 1.0},
    "calibrate3+anchor": {"algo.inner_step_calibration": 3.0, "algo.pre_update_bc_weight": 1.0},
}.items()}




def run(family: str, variant: str, iterations: int | None, extra: list[str], full: bool = False,
        adapt_tasks: int = 0, eval_episodes: int = 3, keep: Path | None = None) -> tuple[list[dict], list[dict]]:
    """Train one variant; returns its stability rows and (with ``adapt_tasks``) its valid-split adaptation rows."""
    if family == "example":  # its configs ship in its package: on VGMPS_CONFIG_PATH, as a user's would be
        import vgmps_reach

        os.environ["VGMPS_CONFIG_PATH"] = str(vgmps_reach.CONFIG_DIR)
    size = [EXPERIMENTS[family]] if full else FAMILIES[family]
    length = [f"train.iterations={iterations}"] if iterations else []
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = str(keep / f"{family}-{variant}") if keep else scratch
        cfg = load_config([*COMMON, *size, *VARIANTS[variant], *length, f"run_dir={run_dir}", *extra])
        trainer = train(cfg)
        episodes = len(trainer.train_tasks) * int(cfg.algo.rollouts_per_task)
        rows = [json.loads(line) for line in (Path(run_dir) / "train_metrics.jsonl").read_text().splitlines()]
        adapted = adapt_rows(run_dir, family, variant, adapt_tasks, eval_episodes, extra) if adapt_tasks else []
    calibration = next((r["step_size_calibration"] for r in rows if "step_size_calibration" in r), 1.0)
    rows = [r for r in rows if "pre/success" in r]
    return [{"family": family, "variant": variant, "after_meta_iterations": i, "success": r["pre/success"],
             "episodes": episodes, "pre_bc_loss": r.get("pre_bc_loss", float("nan")),
             "step_size_calibration": calibration} for i, r in enumerate(rows)], adapted


def adapt_rows(run_dir: str, family: str, variant: str, tasks: int, eval_episodes: int, extra: list[str]) -> list[dict]:
    """Adapt the trained checkpoint on ``tasks`` valid-split tasks, with the reward-shuffled control."""
    overrides = ["wandb.mode=disabled", "torch_threads=1", f"adapt.checkpoint={run_dir}/checkpoints/last.pt",
                 "adapt.split=valid", f"adapt.num_tasks={tasks}", f"adapt.eval_episodes={eval_episodes}",
                 "adapt.control=true", "adapt.step_size=learned",  # the tables in meta_stability.md: the gradient step
                 f"run_dir={run_dir}/adapt",
                 *[o for o in extra if o.startswith(("sampler.", "seed="))]]
    results = adapt(load_config(overrides), overrides=overrides)
    return [{"family": family, "variant": variant, "run": name, "tasks": tasks, "starts": eval_episodes, **row}
            for name in ("learned", CONTROL) for row in protocol_rows(results[name].rows, results[name].per_task_success)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), action="append", required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--iterations", type=int, default=None,
                        help="meta-iterations (default: 3, or the experiment's own with --full)")
    parser.add_argument("--full", action="store_true", help="the experiment's own size, not the shrunk one")
    parser.add_argument("--adapt-tasks", type=int, default=0, help="then adapt on this many valid-split tasks")
    parser.add_argument("--eval-episodes", type=int, default=3, help="evaluation starts per adapted task")
    parser.add_argument("--out", type=Path, default=None, help="append result rows (JSON lines) here")
    parser.add_argument("--keep", type=Path, default=None, help="keep each run in KEEP/FAMILY-VARIANT (default: temporary)")
    parser.add_argument("overrides", nargs="*", help="extra hydra overrides for every run")
    args = parser.parse_args()
    iterations = args.iterations or (None if args.full else 3)
    for family in args.family:
        for variant in args.variants:
            stability, adapted = run(family, variant, iterations, args.overrides, args.full, args.adapt_tasks,
                                     args.eval_episodes, args.keep)
            for row in stability:
                lo, hi = wilson_interval(round(row["success"] * row["episodes"]), row["episodes"])
                print(f"{family:8s} {variant:7s} after {row['after_meta_iterations']} meta-it: success "
                      f"{row['success']:.2f} [{lo:.2f}, {hi:.2f}] (n={row['episodes']}), pre-update BC loss "
                      f"{row['pre_bc_loss']:.4f}, step sizes x{row['step_size_calibration']:g}", flush=True)
            for row in adapted:
                print(f"{family:8s} {variant:7s} {row['run']:8s} valid {row['tasks']}x{row['starts']} step {row['step']}: "
                      f"success {format_interval(row['success'], (row['success_wilson_low'], row['success_wilson_high']))}, "
                      f"{row['improved']}/{row['same']}/{row['worse']} improved/same/worse, gain "
                      f"{format_interval(row['gain'], (row['gain_low'], row['gain_high']))}", flush=True)
            if args.out:
                with args.out.open("a") as f:
                    for row in [*stability, *adapted]:
                        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
