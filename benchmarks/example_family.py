"""Held-out adaptation table of the example outside family (examples/reach_family), one command:

    pip install -e examples/reach_family        # once (`make test` does it)
    python benchmarks/example_family.py         # GMPS on +experiment=reach_cpu, then adapt on held-out targets

Trains with the package defaults (configs/algo/gmps.yaml) plus the example's own experiment
file, found through VGMPS_CONFIG_PATH exactly as a user's would be, then adapts on
``adapt.num_tasks`` test targets with ``adapt.eval_episodes`` evaluation starts each, under the
evaluation protocol (``vision_gmps.evaluation``): 95% Wilson intervals over episodes, paired
improved/same/worse counts and the gain with a paired bootstrap over tasks, and the
reward-shuffled control (the same steps, each target adapted on another target's rewards).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import vgmps_reach

os.environ["VGMPS_CONFIG_PATH"] = os.pathsep.join(p for p in [os.environ.get("VGMPS_CONFIG_PATH", ""),
                                                              str(vgmps_reach.CONFIG_DIR)] if p)

from vision_gmps.adapt import adapt  # noqa: E402
from vision_gmps.config import load_config  # noqa: E402
from vision_gmps.train import train  # noqa: E402
from vision_gmps.evaluation import CONTROL, format_interval, protocol_rows  # noqa: E402




def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    parser.add_argument("--eval-episodes", type=int, default=2, help="evaluation starts per held-out task")
    parser.add_argument("--tasks", type=int, default=20, help="held-out test tasks")
    parser.add_argument("--steps", type=int, default=3, help="policy-gradient steps on reward only")
    parser.add_argument("overrides", nargs="*", help="hydra overrides for training, e.g. train.iterations=10")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run_dir or Path(tmp)
        start = time.perf_counter()
        trainer = train(load_config(["+experiment=reach_cpu", "wandb.mode=disabled", "torch_threads=1",
                                     f"run_dir={run}", *args.overrides]))
        train_s = time.perf_counter() - start
        # named as overrides, so they win over the checkpoint's experiment even where they equal the defaults
        overrides = ["wandb.mode=disabled", "torch_threads=1", f"adapt.checkpoint={run}/checkpoints/last.pt",
                     f"adapt.eval_episodes={args.eval_episodes}", f"adapt.num_tasks={args.tasks}",
                     f"adapt.steps={args.steps}", "adapt.rollouts_per_task=20", "adapt.control=true",
                     f"run_dir={run}/adapt"]
        cfg = load_config(overrides)
        results = adapt(cfg, overrides=overrides)
        n = int(cfg.adapt.num_tasks) * args.eval_episodes
    print(f"\nreach (examples/reach_family): GMPS, {trainer.iteration} meta-iterations, {trainer.env_episodes} "
          f"training episodes, {train_s / 60:.1f} min training; {cfg.adapt.num_tasks} held-out tasks x "
          f"{args.eval_episodes} starts = {n} episodes per row; {cfg.adapt.rollouts_per_task} rollouts per task per step\n")
    print("| run | PG steps (reward only) | success [95% Wilson] | improved / same / worse vs step 0 | "
          "gain [95% paired bootstrap] | final distance (m) |")
    print("|---|---|---|---|---|---|")
    for name, label in (("learned", "adaptation"), (CONTROL, "reward-shuffled control")):
        result = results[name]
        for row in protocol_rows(result.rows, result.per_task_success):
            print(f"| {label} | {row['step']} | {format_interval(row['success'], (row['success_wilson_low'], row['success_wilson_high']))} "
                  f"| {row['improved']} / {row['same']} / {row['worse']} | "
                  f"{format_interval(row['gain'], (row['gain_low'], row['gain_high']))} | {row['final_distance']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
