"""Does the meta-update keep what the BC warm start learned? One run, identical seeds, per variant.

For each family and variant this trains ``--iterations`` GMPS meta-iterations after the BC warm
start and reads the training rollouts' success from ``train_metrics.jsonl``: iteration 1's
pre-update rollouts are collected right after BC, iteration k+1's after k meta-updates.

    python benchmarks/meta_stability.py --family push           # push_cpu, shrunk to fit a shared 2-core box
    python benchmarks/meta_stability.py --family door
    python benchmarks/meta_stability.py --family example        # the examples/ package (pip install -e examples/reach_family)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from vision_gmps.config import load_config
from vision_gmps.evaluation import wilson_interval
from vision_gmps.train import train

COMMON = ["wandb.mode=disabled", "torch_threads=1", "train.eval_every=0", "train.checkpoint_every=100"]
FAMILIES = {
    # push_cpu's settings (BC warm start, 30 outer steps per iteration) on fewer tasks and rollouts.
    "push": ["+experiment=push_cpu", "env.tasks.train=5", "algo.rollouts_per_task=20", "sampler.num_envs=10",
             "algo.dagger.enabled=false"],
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
    "calibrate+anchor": {"algo.inner_step_calibration": 1.5, "algo.pre_update_bc_weight": 1.0},
}.items()}




def run(family: str, variant: str, iterations: int, extra: list[str]) -> list[dict]:
    if family == "example":  # its configs ship in its package: on VGMPS_CONFIG_PATH, as a user's would be
        import vgmps_reach

        os.environ["VGMPS_CONFIG_PATH"] = str(vgmps_reach.CONFIG_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config([*COMMON, *FAMILIES[family], *VARIANTS[variant], f"train.iterations={iterations}",
                           f"run_dir={tmp}", *extra])
        trainer = train(cfg)
        episodes = len(trainer.train_tasks) * int(cfg.algo.rollouts_per_task)
        rows = [json.loads(line) for line in (Path(tmp) / "train_metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "pre/success" in r]
    return [{"family": family, "variant": variant, "after_meta_iterations": i, "success": r["pre/success"],
             "episodes": episodes, "pre_bc_loss": r.get("pre_bc_loss", float("nan"))} for i, r in enumerate(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), action="append", required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="append result rows (JSON lines) here")
    parser.add_argument("overrides", nargs="*", help="extra hydra overrides for every run")
    args = parser.parse_args()
    for family in args.family:
        for variant in args.variants:
            for row in run(family, variant, args.iterations, args.overrides):
                lo, hi = wilson_interval(round(row["success"] * row["episodes"]), row["episodes"])
                print(f"{family:8s} {variant:7s} after {row['after_meta_iterations']} meta-it: success "
                      f"{row['success']:.2f} [{lo:.2f}, {hi:.2f}] (n={row['episodes']}), pre-update BC loss "
                      f"{row['pre_bc_loss']:.4f}", flush=True)
                if args.out:
                    with args.out.open("a") as f:
                        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
