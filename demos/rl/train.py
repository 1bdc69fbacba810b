"""Train SAC experts on privileged state with stable-baselines3 and save them into an expert zoo.

Two modes (``MODES``): ``per_task``, one SAC expert per training task on the dense reward (the GMPS
paper's setting); ``goal``, one goal-conditioned SAC expert for the whole family, given the hidden
parameter as its desired goal, with stable-baselines3's ``HerReplayBuffer`` relabelling episodes
with the goals they did reach. Each expert is one job (``ExpertJob``); jobs run in a process pool
(``workers``), each writes its own weights file and JSON, and ``train_zoo`` gathers them into
``zoo.json``. SAC itself is stable-baselines3's; nothing here re-implements it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from demos.rl.state_env import StateEnv
from demos.rl.zoo import GOAL_KEYS, MODES, ZOO_FORMAT, ZooError, actor_tensors, load_actor, read_zoo, save_actor, write_zoo
from robot_envs import Task, make_family
from robot_envs.base import has_goal_contract

# stable-baselines3's SAC defaults, except smaller networks and buffer: experts on a few state
# dimensions, trained for thousands (not millions) of steps on one CPU core.
SAC_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-3, "buffer_size": 100_000, "learning_starts": 200, "batch_size": 128, "tau": 0.02,
    "gamma": 0.95, "train_freq": 1, "gradient_steps": 1, "ent_coef": "auto", "net_arch": [64, 64],
}
HER_DEFAULTS: dict[str, Any] = {"n_sampled_goal": 4, "goal_selection_strategy": "future"}


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson interval (scipy's binomtest, as vision_gmps.evaluation; demos/ cannot import it)."""
    if n == 0:
        return 0.0, 1.0
    from scipy import stats

    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass
class ExpertJob:
    """Everything one worker needs to train and save one expert (plain data: it crosses processes)."""

    name: str
    mode: str
    family: str
    family_kwargs: dict[str, Any]
    tasks: list[str]  # Task.to_json() of the tasks this expert is trained and evaluated on
    steps: int
    out_dir: str
    seed: int = 0
    eval_episodes: int = 10
    sac: dict[str, Any] = field(default_factory=dict)
    her: dict[str, Any] = field(default_factory=dict)
    skip_images: bool = True
    torch_threads: int = 1


def evaluate_actor(actor_fn, family, tasks: list[Task], episodes: int, goal: bool, layout_env: StateEnv,
                   seed: int) -> dict[str, Any]:
    """Deterministic actions, ``episodes`` reset seeds per task; episode success is success at its last step."""
    env = layout_env.env
    successes, per_task, steps = 0, {}, 0
    for t_i, task in enumerate(tasks):
        env.task = task
        wins = 0
        for k in range(episodes):
            _, info = env.reset(seed=int(np.random.SeedSequence([seed, 0xE7A1, t_i, k]).generate_state(1)[0] % 2**31))
            done = False
            while not done:
                obs = layout_env._obs(info["state"])
                x = np.concatenate([obs[key] for key in GOAL_KEYS]) if goal else obs
                _, _, terminated, truncated, info = env.step(actor_fn(x[None])[0])
                steps += 1
                done = terminated or truncated
            wins += int(info["success"])
        per_task[task.task_id] = wins / episodes
        successes += wins
    n = episodes * len(tasks)
    low, high = wilson(successes, n)
    return {"success": successes / max(n, 1), "success_low": low, "success_high": high, "eval_episodes": n,
            "eval_env_steps": steps, "per_task_success": per_task}


def train_expert(job: ExpertJob) -> dict[str, Any]:
    """Train one SAC expert, export its actor as tensors, evaluate it; returns (and writes) its zoo entry."""
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.her import HerReplayBuffer

    torch.set_num_threads(max(1, int(job.torch_threads)))
    start = time.perf_counter()
    family = make_family(job.family, **job.family_kwargs)
    tasks = [Task.from_json(t) for t in job.tasks]
    goal = job.mode == "goal"
    env = StateEnv(family, tasks, goal_conditioned=goal, skip_images=job.skip_images, seed=job.seed)
    sac = {**SAC_DEFAULTS, **job.sac}
    net_arch = list(sac.pop("net_arch"))
    extra: dict[str, Any] = {}
    if goal:
        extra = {"replay_buffer_class": HerReplayBuffer, "replay_buffer_kwargs": {**HER_DEFAULTS, **job.her}}
    model = SAC("MultiInputPolicy" if goal else "MlpPolicy", env, policy_kwargs={"net_arch": net_arch},
                seed=job.seed, device="cpu", verbose=0, **sac, **extra)
    # Without a logger of its own, SB3 configures one that creates an empty /tmp/SB3-<date> folder per model.
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.learn(total_timesteps=int(job.steps), progress_bar=False)
    train_steps = env.env_steps
    train_s = time.perf_counter() - start
    out = Path(job.out_dir)
    weights = out / f"{job.name}.pt"
    save_actor(weights, actor_tensors(model))
    actor = load_actor(weights)  # evaluate what the zoo will load, not SB3's in-memory policy
    result = evaluate_actor(actor.act, family, tasks, job.eval_episodes, goal, env, job.seed)
    desired = None
    if not goal and has_goal_contract(family):
        env.env.task = tasks[0]
        _, info = env.env.reset(seed=0)
        desired = np.asarray(family.goal_desired(info["state"]), np.float32).ravel().tolist()
    env.close()
    entry = {
        "name": job.name, "weights": weights.name, "mode": job.mode, "family": job.family,
        "tasks": [json.loads(t) for t in job.tasks], "desired_goal": desired,
        **result, "env_steps": int(train_steps), "wall_s": round(time.perf_counter() - start, 2),
        "train_s": round(train_s, 2), "total_timesteps": int(job.steps), "seed": job.seed,
        "sac": {**sac, "net_arch": net_arch}, "her": extra.get("replay_buffer_kwargs"),
        "obs_layout": [list(x) for x in env.layout], "library": f"stable-baselines3 {_sb3_version()}",
    }
    (out / f"{job.name}.json").write_text(json.dumps(entry, indent=2))
    return entry


def _sb3_version() -> str:
    import stable_baselines3

    return stable_baselines3.__version__


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1) - 1)


def run_jobs(jobs: list[ExpertJob], workers: int) -> list[dict[str, Any]]:
    """Train the experts, ``workers`` at a time in spawned processes (inline when 1: no pool to start)."""
    if workers <= 1 or len(jobs) <= 1:
        return [train_expert(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
        return list(pool.map(train_expert, jobs))


def plan_jobs(mode: str, family_name: str, family_kwargs: dict[str, Any], tasks: list[Task], steps: int, out_dir: Path,
              seed: int, eval_episodes: int, sac: dict[str, Any], her: dict[str, Any], skip_images: bool = True,
              torch_threads: int = 1) -> list[ExpertJob]:
    if mode not in MODES:
        raise ZooError(f"mode={mode!r}: use one of {MODES}")
    common = dict(mode=mode, family=family_name, family_kwargs=family_kwargs, steps=steps, out_dir=str(out_dir),
                  eval_episodes=eval_episodes, sac=sac, her=her, skip_images=skip_images, torch_threads=torch_threads)
    if mode == "goal":
        return [ExpertJob(name=f"{family_name}-goal", tasks=[t.to_json() for t in tasks], seed=seed, **common)]
    return [ExpertJob(name=f"{family_name}-{t.split}-{t.index:03d}", tasks=[t.to_json()], seed=seed + t.index, **common)
            for t in tasks]


def prepare_zoo(folder: Path, mode: str, family_name: str, force: bool, append: bool) -> dict[str, Any] | None:
    """Refuse to overwrite an existing zoo unless ``force`` (start afresh) or ``append`` (add experts); returns the kept zoo."""
    if not folder.exists() or not any(folder.iterdir()):
        folder.mkdir(parents=True, exist_ok=True)
        return None
    if force:
        shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return None
    if not append:
        raise ZooError(f"{folder} already exists; add --append to add experts for new tasks to that zoo, "
                       "--force to replace it, or choose another zoo=")
    meta = read_zoo(folder)
    if meta["mode"] != mode or meta["family"] != family_name:
        raise ZooError(f"{folder} holds a {meta['mode']} zoo of {meta['family']!r}; --append needs the same mode and "
                       f"family (asked: mode={mode} env={family_name})")
    if mode == "goal":
        raise ZooError(f"{folder} already holds the family's goal-conditioned expert; use --force to retrain it")
    return meta


def train_zoo(folder: str | Path, mode: str, family_name: str, family_kwargs: dict[str, Any], tasks: list[Task],
              steps: int, workers: int = 1, seed: int = 0, eval_episodes: int = 10, sac: dict[str, Any] | None = None,
              her: dict[str, Any] | None = None, force: bool = False, append: bool = False, skip_images: bool = True,
              torch_threads: int = 1) -> dict[str, Any]:
    """Train the experts ``mode`` asks for on ``tasks`` and write the zoo; returns its ``zoo.json`` content."""
    folder = Path(folder)
    if mode not in MODES:
        raise ZooError(f"mode={mode!r}: use one of {MODES}")
    family = make_family(family_name, **family_kwargs)
    if not has_goal_contract(family):
        raise ZooError(f"family {family_name!r} declares no goal contract (goal_achieved/goal_desired/goal_success, "
                       "robot_envs/base.py), which the zoo needs to match states to experts")
    if steps <= 0 or eval_episodes <= 0:
        raise ZooError(f"steps={steps} and eval_episodes={eval_episodes} must both be > 0")
    kept = prepare_zoo(folder, mode, family_name, force, append)
    if kept is not None:
        have = {json.dumps(t, sort_keys=True) for e in kept["experts"] for t in e["tasks"]}
        fresh = [t for t in tasks if json.dumps(json.loads(t.to_json()), sort_keys=True) not in have]
        if not fresh:
            raise ZooError(f"{folder} already has an expert for each of the {len(tasks)} tasks asked for; nothing to add")
        tasks = fresh
    jobs = plan_jobs(mode, family_name, family_kwargs, tasks, steps, folder, seed, eval_episodes, sac or {}, her or {},
                     skip_images, torch_threads)
    start = time.perf_counter()
    entries = run_jobs(jobs, workers)
    experts = (kept["experts"] if kept else []) + entries
    meta = {
        "format": ZOO_FORMAT, "mode": mode, "family": family_name,
        "family_spec": {"family": family_name, "kwargs": family_kwargs}, "env_args": family.env_args(),
        "obs_layout": entries[0]["obs_layout"], "workers": workers,
        "env_steps": int(sum(e["env_steps"] for e in experts)),
        "eval_env_steps": int(sum(e["eval_env_steps"] for e in experts)),
        "wall_s": round((kept or {}).get("wall_s", 0.0) + time.perf_counter() - start, 2),
        "experts": experts,
    }
    write_zoo(folder, meta)
    return meta


def zoo_summary(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per expert: what `vgmps experts list` prints."""
    return [{"expert": e["name"], "tasks": len(e["tasks"]), "success": e["success"], "low": e["success_low"],
             "high": e["success_high"], "episodes": e["eval_episodes"], "env_steps": e["env_steps"], "wall_s": e["wall_s"]}
            for e in meta["experts"]]


__all__ = ["ExpertJob", "HER_DEFAULTS", "SAC_DEFAULTS", "default_workers", "plan_jobs", "train_expert",
           "train_zoo", "wilson", "zoo_summary"]
