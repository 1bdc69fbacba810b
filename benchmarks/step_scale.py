"""Choose ``adapt.learned_step_scale`` on the validation split: success after each step, per scale.

Meta-training learns the step sizes for one inner step; at meta-test the same step is taken
``--steps`` times on fresh rollouts, so a larger or smaller step may suit the test-time
budget better. This sweeps a multiplier of the learned step sizes over checkpoints (training
seeds) on the *valid* split, never the test split the tables report, with the same tasks,
starts and rollout seeds for every scale (``run_adaptation``, the routine `vgmps adapt` runs).

    python benchmarks/step_scale.py runs/bench_push_cpu/gmps_no_dagger/seed{0,1}/checkpoints/last.pt \
        --scales 1 1.5 2 3 --tasks 20 --json step_scale.json
    python benchmarks/step_scale.py runs/<door run>/checkpoints/last.pt --scales 1 --shrink off on

``--shrink off on`` also compares steps shortened by their own noise (``adapt.shrink_steps``,
``vision_gmps.inner.shrunk_step``); ``--natural 1 2`` adds natural-gradient steps on the output layer
of those sizes (``adapt.step_size=natural``, ``adapt.natural_step_scale``; ``--scales`` may then be
empty). The JSON keeps each task's success and final metric per step, for paired comparisons.

    python benchmarks/step_scale.py <door checkpoint> --scales 1 --natural 0.5 1 2 4 --steps 1
    python benchmarks/step_scale.py <push checkpoint> --scales --natural 2 --explore-shift 0 0.35 0  # wider sideways
    python benchmarks/step_scale.py <push checkpoint> --scales --natural 2 --unrewarded-below 0.2 --unrewarded-shift 0 0.7 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from robot_envs import make_family
from vision_gmps.adaptation import run_adaptation
from vision_gmps.checkpoint import load_checkpoint, policy_from_checkpoint
from vision_gmps.checks import exploration_problems
from vision_gmps.evaluation import format_interval
from vision_gmps.rollouts import Sampler


def variant_name(scale: float, shrink: bool, natural: bool = False) -> str:
    if natural:
        return f"natural {scale:g}"
    return f"{scale:g}, shrunk" if shrink else f"{scale:g}"


def sweep(ckpt: Path, scales: list[float], args: argparse.Namespace) -> dict[str, dict]:
    """Every (shrink, step scale) on the same tasks and seeds: rows and per-task outcomes."""
    state = load_checkpoint(ckpt)
    cfg = OmegaConf.create(state["config_yaml"])
    policy, step_sizes = policy_from_checkpoint(state)
    family = make_family(cfg.env.family, **cfg.env.kwargs)
    tasks = family.sample("valid", args.tasks, cfg.env.tasks.seed)
    sampler = Sampler.from_config(family, cfg.sampler)
    out = {}
    try:
        variants = [(scale, shrink == "on", False) for shrink in args.shrink for scale in scales]
        variants += [(scale, False, True) for scale in args.natural]
        for scale, shrink, natural in variants:
            start = time.perf_counter()
            sizes = {k: v.detach() for k, v in step_sizes.as_dict(1.0 if natural else scale).items()}
            result = run_adaptation(policy, sizes, sampler, tasks, args.steps, args.rollouts, cfg.algo.gamma,
                                    cfg.algo.baseline, args.eval_episodes, args.seed, shrink=shrink,
                                    natural_scale=scale if natural else None, explore_log_std_shift=args.explore_shift,
                                    unrewarded_below=args.unrewarded_below, unrewarded_log_std_shift=args.unrewarded_shift)
            name = variant_name(scale, shrink, natural)
            out[name] = {"rows": result.rows, "per_task_success": result.per_task_success.tolist(),
                         "explore_log_std_shift": args.explore_shift, "unrewarded_below": args.unrewarded_below,
                         "unrewarded_log_std_shift": args.unrewarded_shift,
                         **{f"per_task_final_{k}": v.tolist() for k, v in result.per_task_final.items()}}
            finals = "".join(f"; {k}: " + " -> ".join(f"{r[k]:.3g}" for r in result.rows)
                             for k in result.rows[0] if k.startswith("final_"))
            print(f"{ckpt}: scale {name}: success " + " -> ".join(f"{r['success']:.2f}" for r in result.rows)
                  + finals + f" ({time.perf_counter() - start:.0f} s)", flush=True)
    finally:
        sampler.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path, help="one meta-trained checkpoint per training seed")
    parser.add_argument("--scales", nargs="*", type=float, default=[1.0, 2.0])
    parser.add_argument("--tasks", type=int, default=20, help="valid-split tasks")
    parser.add_argument("--eval-episodes", type=int, default=2, help="evaluation starts per task")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rollouts", type=int, default=40, help="rollouts per task per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shrink", nargs="+", default=["off"], choices=["off", "on"],
                        help="on: each task's step shortened by its own noise (adapt.shrink_steps)")
    parser.add_argument("--natural", nargs="*", type=float, default=[],
                        help="sizes of natural-gradient steps on the output layer (adapt.step_size=natural)")
    parser.add_argument("--explore-shift", nargs="+", type=float, default=None,
                        help="adapt.explore_log_std_shift for every variant: one number, or one per action dimension")
    parser.add_argument("--unrewarded-below", type=float, default=None,
                        help="adapt.unrewarded_below: widen tasks whose rollouts earned reward less often than this")
    parser.add_argument("--unrewarded-shift", nargs="+", type=float, default=None,
                        help="adapt.unrewarded_log_std_shift: one number or one per action dimension")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if any(s <= 0 for s in args.scales + args.natural):
        parser.error("--scales and --natural must all be > 0")
    if not args.scales and not args.natural:
        parser.error("give --scales, --natural or both")
    exploration = {"explore_log_std_shift": args.explore_shift, "unrewarded_below": args.unrewarded_below,
                   "unrewarded_log_std_shift": args.unrewarded_shift}
    if problems := exploration_problems(exploration.get):  # adapt's own checks, before the sampler starts
        parser.error("; ".join(problems))
    torch.set_num_threads(1)  # the sampler's workers take the other cores
    runs = {str(ckpt): sweep(ckpt, args.scales, args) for ckpt in args.checkpoints}
    print(f"\nvalid split, {args.tasks} tasks x {args.eval_episodes} starts, {args.steps} steps of {args.rollouts} rollouts; "
          "success after the last step (Wilson 95%), then the mean over checkpoints:")
    for name in runs[str(args.checkpoints[0])]:
        last = [runs[c][name]["rows"][-1] for c in runs]
        cells = [format_interval(r["success"], (r["success_wilson_low"], r["success_wilson_high"])) for r in last]
        print(f"  scale {name}: " + ", ".join(cells) + f"; mean {np.mean([r['success'] for r in last]):.3f}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
