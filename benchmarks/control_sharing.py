"""Wall time of adaptation with the reward-shuffled control: the two runs apart against side by side.

``run_adaptation(with_control=True)`` collects the step-0 evaluation and the first step's
rollouts once for both runs (they start from the same parameters and seeds, so they are the same
episodes) and gives the same numbers as the two runs apart. This times both ways in one process,
alternating, on one checkpoint, and asserts the rows are identical.

    python benchmarks/control_sharing.py runs/push_demo/checkpoints/last.pt --tasks 10 --rounds 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from robot_envs import make_family
from vision_gmps.adaptation import run_adaptation
from vision_gmps.checkpoint import load_checkpoint, policy_from_checkpoint
from vision_gmps.rollouts import Sampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--tasks", type=int, default=10, help="valid-split tasks")
    parser.add_argument("--eval-episodes", type=int, default=3, help="evaluation starts per task (the main job: 3)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rollouts", type=int, default=40, help="rollouts per task per step")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the sampler's workers take the other cores
    state = load_checkpoint(args.checkpoint)
    cfg = OmegaConf.create(state["config_yaml"])
    policy, step_sizes = policy_from_checkpoint(state)
    sizes = {k: v.detach() for k, v in step_sizes.as_dict().items()}
    family = make_family(cfg.env.family, **cfg.env.kwargs)
    tasks = family.sample("valid", args.tasks, cfg.env.tasks.seed)
    sampler = Sampler.from_config(family, cfg.sampler)
    common = dict(policy=policy, step_sizes=sizes, sampler=sampler, tasks=tasks, gamma=cfg.algo.gamma,
                  baseline=cfg.algo.baseline, eval_episodes=args.eval_episodes, seed=0)
    sized = dict(steps=args.steps, rollouts_per_task=args.rollouts)
    times: dict[str, list[float]] = {"apart": [], "side by side": []}
    try:
        run_adaptation(**common, steps=1, rollouts_per_task=2)  # start the workers and warm up
        for _ in range(args.rounds):
            start = time.perf_counter()
            apart = [run_adaptation(**common, **sized, shuffle_rewards=s) for s in (False, True)]
            times["apart"].append(time.perf_counter() - start)
            start = time.perf_counter()
            together = run_adaptation(**common, **sized, with_control=True)
            times["side by side"].append(time.perf_counter() - start)
            assert apart[0].rows == together.rows and apart[1].rows == together.control.rows
    finally:
        sampler.close()
    print(f"{args.tasks} tasks x {args.eval_episodes} starts, {args.steps} steps of {args.rollouts} rollouts, "
          f"sampler {cfg.sampler.backend}; identical rows both ways")
    for name, values in times.items():
        print(f"{name}: " + " ".join(f"{v:.1f}" for v in values) + " s")
    print("ratio per round: " + " ".join(f"{a / b:.2f}x" for a, b in zip(times["apart"], times["side by side"])))


if __name__ == "__main__":
    main()
