"""Scripted-expert success rate per family and split: the experts must solve >= 95% of episodes.

    python benchmarks/expert_success.py                       # push and door, 20 tasks x 2 episodes per split
    python benchmarks/expert_success.py --families point push --tasks 50 --episodes 1

Episodes use the same reset seeds as ``vgmps collect`` (``demos.collect.episode_seed``), so a
failure printed here can be reproduced with the listed task id and episode number.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from demos.collect import episode_seed
from demos.scripted import expert_for
from robot_envs import make_family

TARGET = 0.95


def run(family_name: str, split: str, num_tasks: int, episodes: int, seed: int, noise: float = 0.0) -> dict:
    family = make_family(family_name)
    expert = expert_for(family)
    tasks = family.sample(split, num_tasks, seed)
    env = family.make_env(tasks[0])
    rng = np.random.default_rng([seed, 0x5EED])
    results, failures = [], []
    start = time.perf_counter()
    try:
        for task in tasks:
            for k in range(episodes):
                env.task = task
                _, info = env.reset(seed=episode_seed(seed, task, k))
                done = False
                while not done:
                    action = expert.act(info["state"])
                    if noise > 0:  # how well the expert recovers from a learner's sloppy states (DAgger)
                        action = np.clip(action + noise * rng.standard_normal(action.shape), -1.0, 1.0)
                    _, _, terminated, truncated, info = env.step(action)
                    done = terminated or truncated
                results.append(bool(info["success"]))
                if not info["success"]:
                    failures.append(f"{task.task_id}#{k}")
    finally:
        env.close()
    return {"family": family_name, "split": split, "episodes": len(results), "successes": int(sum(results)),
            "seconds": time.perf_counter() - start, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=["push", "door"])
    p.add_argument("--tasks", type=int, default=20, help="tasks per split")
    p.add_argument("--episodes", type=int, default=2, help="episodes per task (different reset seeds)")
    p.add_argument("--seed", type=int, default=0, help="task-set seed (configs use 0)")
    p.add_argument("--noise", type=float, default=0.0, help="std of Gaussian noise added to executed actions")
    args = p.parse_args(argv)
    table = Table("family", "split", "episodes", "success", "rate", "time (s)", "failed episodes", title=f"scripted experts (action noise {args.noise})")
    ok = True
    for family in args.families:
        for split in ("train", "test"):
            r = run(family, split, args.tasks, args.episodes, args.seed, args.noise)
            rate = r["successes"] / max(r["episodes"], 1)
            ok &= rate >= TARGET
            table.add_row(family, split, str(r["episodes"]), str(r["successes"]), f"{rate:.1%}", f"{r['seconds']:.1f}",
                          ", ".join(r["failures"][:6]) + (" ..." if len(r["failures"]) > 6 else ""))
    Console().print(table)
    print(f"target >= {TARGET:.0%} on every row: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
