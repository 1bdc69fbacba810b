"""Held-out adaptation table of the example outside family (examples/reach_family), one command:

    pip install -e examples/reach_family        # once (`make test` does it)
    python benchmarks/example_family.py         # GMPS on +experiment=reach_cpu, then adapt on held-out targets

Trains with the package defaults (configs/algo/gmps.yaml) plus the example's own experiment
file, found through VGMPS_CONFIG_PATH exactly as a user's would be, then adapts on
``adapt.num_tasks`` test targets with ``adapt.eval_episodes`` evaluation starts each. Success
rates get a 95% Wilson interval over episodes (benchmarks/wilson.py: switch it to
``vision_gmps.evaluation`` once the evaluation-protocol module is merged, which adds the task
bootstrap and the reward-shuffled control; this script does not run that control).
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
from wilson import wilson  # noqa: E402  (benchmarks/wilson.py)




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
        cfg = load_config(["wandb.mode=disabled", "torch_threads=1", f"adapt.checkpoint={run}/checkpoints/last.pt",
                           f"adapt.eval_episodes={args.eval_episodes}", f"adapt.num_tasks={args.tasks}",
                           f"adapt.steps={args.steps}", "adapt.rollouts_per_task=20", f"run_dir={run}/adapt"])
        result = adapt(cfg)["learned"]
        n = int(cfg.adapt.num_tasks) * args.eval_episodes
    print(f"\nreach (examples/reach_family): GMPS, {trainer.iteration} meta-iterations, {trainer.env_episodes} "
          f"training episodes, {train_s / 60:.1f} min training; {cfg.adapt.num_tasks} held-out tasks x "
          f"{args.eval_episodes} starts = {n} episodes per row; {cfg.adapt.rollouts_per_task} rollouts per task per step\n")
    print("| PG steps (reward only) | success | 95% interval (Wilson) | final distance (m) |")
    print("|---|---|---|---|")
    for row in result.rows:
        lo, hi = wilson(round(row["success"] * n), n)
        print(f"| {row['step']} | {row['success']:.2f} | [{lo:.2f}, {hi:.2f}] | {row['final_distance']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
