"""How many held-out tasks can a sparse-reward inner step see at all, given the family's exploration?

A reward-only policy-gradient step on sparse reward is zero for a task none of whose rollouts
succeeds. This measures, before any meta-training, how far exploration spreads what the rollouts
achieve (block position, door angle) and so how many test tasks get any reward. Two stand-ins for
a pre-update policy, both rolled out on the family's *middle* task (``default_task``):

* ``expert``: the scripted expert (a policy that has learned the average task perfectly) plus the
  exploration noise the experiment trains with, ``exp(policy.init_log_std)`` per step (``step``
  mode), or one action offset per episode (``offset`` mode, as ``policy.offset_log_std``);
* ``bc``: the experiment's own BC warm start (``algo.pretrain_steps`` on its expert episodes),
  sampled exactly as meta-training samples it (per-step noise, plus the per-episode offset or
  input latent if the policy has one); ``--override`` changes the experiment, e.g.
  ``policy.latent_log_std=0``.

Each rollout's final achieved goal (``goal_achieved``; for ``bc`` the last recorded state, before
the last action) is scored against every test task (``goal_success``), so one batch of rollouts
answers for all tasks at once.

    python benchmarks/exploration_reach.py                                # push_cpu and door_cpu, expert stand-in
    python benchmarks/exploration_reach.py --experiments door_cpu --noise 0.135 0.27 --mode step offset
    python benchmarks/exploration_reach.py --experiments door_cpu --stand-in bc --override policy.latent_log_std=0

What it does not show: that a task with reward gets a step in the right direction, nor how far.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from demos.scripted import expert_for
from robot_envs import make_family
from vision_gmps.config import load_config


def expert_outcomes(family, noise: float, mode: str, rollouts: int, seed: int) -> np.ndarray:
    """Final ``goal_achieved`` of ``rollouts`` noisy expert episodes on the middle task, [rollouts, goal_dim]."""
    expert = expert_for(family)
    env = family.make_env(family.default_task())
    rng = np.random.default_rng([seed, 0xE4B])
    finals = []
    try:
        for k in range(rollouts):
            _, info = env.reset(seed=seed * 100_003 + k)
            offset = noise * rng.standard_normal(env.action_space.shape)
            done = False
            while not done:
                action = expert.act(info["state"])
                action = action + (noise * rng.standard_normal(action.shape) if mode == "step" else offset)
                _, _, terminated, truncated, info = env.step(np.clip(action, -1.0, 1.0).astype(np.float32))
                done = terminated or truncated
            finals.append(family.goal_achieved(info["state"]))
    finally:
        env.close()
    return np.asarray(finals, dtype=np.float64)


def bc_outcomes(cfg, rollouts: int, seed: int) -> tuple[np.ndarray, str]:
    """Final ``goal_achieved`` of ``rollouts`` sampled episodes of the BC warm start on the middle task."""
    from vision_gmps.rollouts import PolicyActor
    from vision_gmps.trainer import MetaTrainer

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = MetaTrainer(cfg, Path(run_dir))
        try:
            trainer.init_expert_data()
            trainer.pretrain()
            task = trainer.family.default_task()
            actor = PolicyActor(trainer.policy, [trainer.policy.params()], seed=seed)
            batch = trainer.sampler.collect([task], rollouts, actor, seed=seed)
        finally:
            trainer.sampler.close()
    last = {k: v[:, -1] for k, v in batch.states.items()}
    kind = "latent" if trainer.policy.has_latent else "offset" if trainer.policy.has_offset else "step"
    return np.asarray(trainer.family.goal_achieved(last), dtype=np.float64).reshape(rollouts, -1), kind


def reach(family, finals: np.ndarray, num_tasks: int, seed: int) -> dict:
    """Per test task, the fraction of the rollouts that would have succeeded on it."""
    tasks = family.sample("test", num_tasks, seed)
    env = family.make_env(tasks[0])
    try:
        desired = []
        for task in tasks:  # the hidden parameter as the family states it (goal_desired reads the env state)
            env.task = task
            _, info = env.reset(seed=0)
            desired.append(family.goal_desired(info["state"]))
    finally:
        env.close()
    rate = np.array([family.goal_success(finals, d[None, :]).mean() for d in np.asarray(desired, np.float64)])
    return {"with_reward": float((rate > 0).mean()), "median_rate": float(np.median(rate))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", nargs="+", default=["push_cpu", "door_cpu"])
    p.add_argument("--stand-in", nargs="+", choices=["expert", "bc"], default=["expert"])
    p.add_argument("--noise", nargs="+", type=float, default=None,
                   help="expert stand-in: exploration std per action unit (default: exp(policy.init_log_std))")
    p.add_argument("--mode", nargs="+", choices=["step", "offset"], default=["step"], help="expert stand-in only")
    p.add_argument("--override", nargs="*", default=[], help="config overrides for the experiment, KEY=VALUE")
    p.add_argument("--rollouts", type=int, default=40, help="rollouts per inner step (push_cpu/door_cpu: 40)")
    p.add_argument("--tasks", type=int, default=50, help="test tasks to score against")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.rollouts < 2 or args.tasks < 1:
        raise SystemExit("--rollouts must be >= 2 and --tasks >= 1")

    table = Table(title=f"Sparse reward reached by {args.rollouts} exploring rollouts of the middle task, {args.tasks} test tasks")
    for col in ("experiment", "stand-in", "exploration", "outcome sd (goal units)", "outcome range",
                "tasks with any reward", "median reward rate", "seconds"):
        table.add_column(col)
    for name in args.experiments:
        cfg = load_config([f"+experiment={name}", "wandb.mode=disabled", *args.override])
        family = make_family(cfg.env.family, **cfg.env.kwargs)
        runs = []
        if "expert" in args.stand_in:
            for noise in args.noise or [math.exp(float(cfg.policy.init_log_std))]:
                for mode in args.mode:
                    runs.append(("expert", f"{mode} {noise:.3g}",
                                 lambda noise=noise, mode=mode: expert_outcomes(family, noise, mode, args.rollouts, args.seed)))
        if "bc" in args.stand_in:
            runs.append(("bc", None, lambda: bc_outcomes(cfg, args.rollouts, args.seed)))
        for stand_in, label, outcomes in runs:
            start = time.perf_counter()
            finals = outcomes()
            if stand_in == "bc":
                finals, kind = finals
                label = f"{kind}, per-step {math.exp(float(cfg.policy.init_log_std)):.3g}"
            r = reach(family, finals, args.tasks, args.seed)
            table.add_row(name, stand_in, label, " ".join(f"{s:.3g}" for s in finals.std(axis=0)),
                          " ".join(f"{lo:.3g}..{hi:.3g}" for lo, hi in zip(finals.min(0), finals.max(0))),
                          f"{r['with_reward']:.2f}", f"{r['median_rate']:.2f}", f"{time.perf_counter() - start:.0f}")
    Console(width=160).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
