"""Sampler backends side by side, in one run: image steps/s, a push meta-iteration, memory per env.

Measures on this machine, at the main job's push settings (``+experiment=push_cpu``: 24x32
images, horizon 30, 20 envs in lockstep, the conv policy acting):

1. **Memory per env and one env's steps/s**: resident memory added by each robosuite env
   after the first, and one env's image steps/s with random actions, in a fresh process, for
   this checkout and (``--before PATH``) another checkout, e.g. the commit before a change;
   rounds interleaved, the steps/s ratio is the median of per-round ratios.
2. **Image steps/s** through ``Sampler.collect`` for ``sync`` (in-process), ``parallel``
   with 1 and 2 workers, and ``ray`` with 1 and 2 actors (a local 2-CPU Ray); rounds are
   interleaved so load changes hit every backend alike. Every backend's batch is checked
   to be identical to the ``sync`` one. "Full two-core env throughput" is twice this
   checkout's one-env steps/s from part 1 (no sampler, random actions; best round).
3. **Meta-iteration wall time** (one GMPS iteration of push_cpu: 10 tasks x 40 rollouts x 30
   steps, then 30 second-order Adam steps), split into sampling and learner time, for
   ``sync`` and ``parallel`` with 2 workers (``--iteration-backends`` to change).

Run: ``python benchmarks/sampler_speed.py --before /path/to/old/checkout --json out.json``
(about 10 minutes on 2 busy cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PUSH = dict(image_size=(24, 32), horizon=30)

_ENV_PROBE = """
import ctypes, json, sys, time
import numpy as np
def rss():
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024
from robot_envs import make_family
family = make_family("push", image_size=(24, 32), horizon=30)
base = rss()
envs = [family.make_env()]
first = rss()
for _ in range({n}):
    envs.append(family.make_env())
    envs[-1].reset(seed=0); envs[-1].step(np.zeros(3))
per_env = (rss() - first) / {n}
env, actions = envs[0], np.random.default_rng(0).uniform(-1, 1, ({steps}, 3))
start = time.perf_counter()
for t, action in enumerate(actions):
    if t % 30 == 0:
        env.reset(seed=t)
    env.step(action)
rate = {steps} / (time.perf_counter() - start)
print(json.dumps({{"first_env_mb": first - base, "per_env_mb": per_env, "env_steps_per_s": rate}}))
"""


def env_probe(checkout: Path, n: int = 4, steps: int = 600) -> dict[str, float]:
    """Memory per env and one env's image steps/s (random actions), in a fresh process on ``checkout``'s code."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _ENV_PROBE.format(n=n, steps=steps)], env=env, capture_output=True,
                         text=True, timeout=900, check=True, cwd=checkout)  # cwd: `python -c` imports from it first
    return json.loads(out.stdout.strip().splitlines()[-1])


def checkouts_side_by_side(checkouts: dict[str, Path], rounds: int) -> dict[str, dict]:
    """``env_probe`` on each checkout, rounds interleaved so load changes hit both alike; best steps/s, median ratio."""
    runs: dict[str, list[dict]] = {name: [] for name in checkouts}
    for r in range(rounds):
        for name, path in checkouts.items():
            runs[name].append(env_probe(path))
            print(f"round {r} {name:6s} {runs[name][-1]}", flush=True)
    out: dict[str, dict] = {
        name: {"per_env_mb": float(np.median([x["per_env_mb"] for x in rows])),
               "first_env_mb": float(np.median([x["first_env_mb"] for x in rows])),
               "env_steps_per_s_best": max(x["env_steps_per_s"] for x in rows),
               "env_steps_per_s_rounds": [x["env_steps_per_s"] for x in rows]}
        for name, rows in runs.items()
    }
    if "before" in runs:
        ratios = [a["env_steps_per_s"] / b["env_steps_per_s"] for a, b in zip(runs["after"], runs["before"])]
        out["after_over_before_steps_per_s"] = {"median": float(np.median(ratios)), "rounds": ratios}
    return out


def policy_and_actor():
    import torch
    from omegaconf import OmegaConf

    from vision_gmps.policy import build_policy
    from vision_gmps.rollouts import PolicyActor

    cfg = OmegaConf.load(ROOT / "configs" / "policy" / "conv.yaml")
    torch.manual_seed(0)
    policy = build_policy((*PUSH["image_size"], 3), 5, 3, cfg)
    return lambda n: PolicyActor(policy, [policy.params()] * n, seed=1)


def throughput(backends: list[tuple[str, int]], rounds: int, tasks: int, episodes: int) -> dict[str, dict]:
    from robot_envs import make_family
    from vision_gmps.rollouts import Sampler

    family = make_family("push", **PUSH)
    task_list = family.sample("train", tasks)
    actor = policy_and_actor()
    rates: dict[str, list[float]] = {f"{b}-{w}": [] for b, w in backends}
    start_s: dict[str, list[float]] = {name: [] for name in rates}
    reference = None
    steps = tasks * episodes * PUSH["horizon"]
    for r in range(rounds):
        for backend, workers in backends:  # one sampler alive at a time: 5 x 20 push envs would not fit in RAM
            name = f"{backend}-{workers}"
            t0 = time.perf_counter()
            sampler = Sampler(family, 20, backend, workers=workers, timeout_s=600)
            start_s[name].append(time.perf_counter() - t0)
            try:
                t0 = time.perf_counter()
                batch = sampler.collect(task_list, episodes, actor(tasks), seed=7)
                rates[name].append(steps / (time.perf_counter() - t0))
            finally:
                sampler.close()
            if reference is None:
                reference = batch
            else:
                assert np.array_equal(batch.images, reference.images) and np.array_equal(batch.actions, reference.actions), \
                    f"{name} gave different episodes from sync"
            print(f"round {r} {name:10s} {rates[name][-1]:7.0f} steps/s (start {start_s[name][-1]:.1f} s)", flush=True)
    return {name: {"steps_per_s_best": max(v), "steps_per_s_median": float(np.median(v)), "start_s": float(np.median(start_s[name]))}
            for name, v in rates.items()}


def meta_iteration(backend: str, workers: int) -> dict[str, float]:
    from vision_gmps.config import load_config
    from vision_gmps.rollouts import Sampler
    from vision_gmps.trainer import MetaTrainer

    cfg = load_config(["+experiment=push_cpu", "torch_threads=1", "wandb.mode=disabled", "algo.pretrain_steps=0",
                       "algo.expert.episodes_per_task=1", f"sampler.backend={backend}", f"sampler.workers={workers}"])
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = MetaTrainer(cfg, Path(run_dir))
        sampling = [0.0]
        collect = trainer.sampler.collect

        def timed_collect(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return collect(*args, **kwargs)
            finally:
                sampling[0] += time.perf_counter() - t0

        trainer.sampler.collect = timed_collect
        try:
            trainer.init_expert_data()
            sampling[0] = 0.0
            t0 = time.perf_counter()
            trainer.train_iteration()
            total = time.perf_counter() - t0
        finally:
            Sampler.close(trainer.sampler)
    # the iteration's own tasks (push_cpu: 10 of its 40 training tasks), not the whole training split
    steps = trainer.meta_batch * cfg.algo.rollouts_per_task * cfg.env.kwargs.horizon
    return {"iteration_s": total, "sampling_s": sampling[0], "learner_s": total - sampling[0], "image_steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path,
                        help="another checkout to measure memory per env and one env's steps/s in (the 'before')")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=20, help="per task, per throughput measurement")
    parser.add_argument("--iteration-backends", default="sync-1,parallel-2", help="'' to skip the iteration part")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    load = os.getloadavg()
    results: dict = {"load_avg_at_start": load, "cpus": os.cpu_count()}
    print(f"load average at start: {load}", flush=True)

    checkouts = {"after": ROOT, **({"before": args.before} if args.before else {})}
    results["memory"] = checkouts_side_by_side(checkouts, args.rounds)
    print("memory per env and one env's steps/s, by checkout:", results["memory"], flush=True)

    # the ideal sampling rate below: this checkout's one env, best of the probe's rounds
    results["bare_env_steps_per_s"] = results["memory"]["after"]["env_steps_per_s_best"]
    print(f"bare env, one process: {results['bare_env_steps_per_s']:.0f} steps/s", flush=True)

    import ray

    from vision_gmps.sampling.ray_waves import use_full_priority

    use_full_priority()  # actors at normal priority, as the sampler's own Ray runs them
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        backends = [("sync", 1), ("parallel", 1), ("parallel", 2), ("ray", 1), ("ray", 2)]
        results["throughput"] = throughput(backends, args.rounds, args.tasks, args.episodes)
    finally:
        ray.shutdown()

    results["iteration"] = {}
    for spec in filter(None, args.iteration_backends.split(",")):
        backend, workers = spec.rsplit("-", 1)
        results["iteration"][spec] = meta_iteration(backend, int(workers))
        print(f"meta-iteration {spec}: {results['iteration'][spec]}", flush=True)
    results["load_avg_at_end"] = os.getloadavg()

    sync = results["throughput"]["sync-1"]["steps_per_s_best"]
    print("\n| backend | image steps/s (best) | median | x sync | start (s) |\n|---|---|---|---|---|")
    for name, row in results["throughput"].items():
        print(f"| {name} | {row['steps_per_s_best']:.0f} | {row['steps_per_s_median']:.0f} | "
              f"{row['steps_per_s_best'] / sync:.2f} | {row['start_s']:.1f} |")
    ideal_sampling = None
    print("\n| backend | iteration (s) | sampling (s) | learner (s) | x target base |\n|---|---|---|---|---|")
    for name, row in results["iteration"].items():
        ideal_sampling = row["image_steps"] / (2 * results["bare_env_steps_per_s"])
        base = ideal_sampling + row["learner_s"]
        print(f"| {name} | {row['iteration_s']:.1f} | {row['sampling_s']:.1f} | {row['learner_s']:.1f} | "
              f"{row['iteration_s'] / base:.2f} |")
    if ideal_sampling is not None:
        print(f"(target base = sampling at 2 x bare-env rate ({ideal_sampling:.1f} s) + that run's learner time)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
