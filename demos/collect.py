"""Record scripted-expert demonstrations for a family's tasks into an HDF5 file.

Each episode stays in memory until it ends and is then appended by ``DemoWriter``, so a
collection killed at any point leaves every finished demo readable (see ``demos.hdf5``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from demos.hdf5 import DemoReader, DemoWriter, Episode, EpisodeRecorder, make_env_args
from demos.scripted import ScriptedExpert, expert_for
from robot_envs import Task, TaskFamily, available_families, family_class, make_family
from robot_envs.base import sim_state
from robot_envs.plugins import constructor_params


def rebuild_family(env_args: dict[str, Any]) -> TaskFamily:
    """The family a demo file was recorded with, from its ``env_args``.

    ``env_kwargs`` also carries descriptive keys (robot, proprio_keys) that the family's
    constructor does not take; only the keys it accepts are passed.
    """
    name = env_args["family"]
    kwargs = dict(env_args.get("env_kwargs", {}))
    if name not in available_families() and env_args.get("env_kwargs", {}).get("family_class"):
        name = env_args["env_kwargs"]["family_class"]  # a family given as module:Class, not installed by name
    accepted = constructor_params(family_class(name))
    return make_family(name, **{k: v for k, v in kwargs.items() if k in accepted})


def select_tasks(family: TaskFamily, split: str, num_tasks: int, seed: int, indices: list[int] | None = None) -> list[Task]:
    tasks = family.sample(split, num_tasks if not indices else max(max(indices) + 1, num_tasks), seed)
    if indices:
        return [tasks[i] for i in indices]
    return tasks


def episode_seed(seed: int, task: Task, k: int) -> int:
    """A distinct, reproducible reset seed per (run seed, task, demo number)."""
    split = 0 if task.split == "train" else 1
    return int(np.random.SeedSequence([seed, split, task.index + 1, k]).generate_state(1)[0])


def used_seeds(path: str | Path) -> set[int]:
    """Reset seeds of the demos already in ``path`` (empty when it does not exist)."""
    if not Path(path).exists():
        return set()
    with DemoReader(path) as reader:
        return {int(reader.file["data"][n].attrs.get("seed", -1)) for n in reader.demos} - {-1}


def fresh_seeds(seed: int, task: Task, count: int, used: set[int]) -> list[int]:
    """``count`` reset seeds for ``task`` that no demo in ``used`` has: appending adds new episodes, never copies."""
    out: list[int] = []
    k = 0
    while len(out) < count:
        s = episode_seed(seed, task, k)
        if s not in used:
            out.append(s)
            used.add(s)
        k += 1
    return out


def model_xml(env: Any) -> str:
    return env.model_xml() if hasattr(env, "model_xml") else ""


def run_episode(
    env: Any,
    task: Task,
    act: Callable[[dict[str, np.ndarray], dict[str, Any]], np.ndarray],
    source: str,
    seed: int,
    expert: ScriptedExpert | None = None,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> Episode:
    """Run one fixed-length episode with ``act(obs, info)``; with ``noise``, executes expert + N(0, noise)."""
    env.task = task
    obs, info = env.reset(seed=seed)
    rec = EpisodeRecorder(task, source, seed)
    rec.start(obs, sim_state(env))
    done = False
    while not done:
        label = np.asarray(act(obs, info), dtype=np.float32)
        action = label
        if noise > 0.0:
            assert rng is not None, "noise needs an rng"
            action = np.clip(label + noise * rng.standard_normal(label.shape), -1.0, 1.0).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        done = bool(terminated or truncated)
        rec.step(action, obs, reward, done, info, sim_state(env), expert_action=label if expert else None)
    return rec.finish(model_xml(env))


@dataclass
class CollectStats:
    demos: int = 0
    successes: int = 0
    per_task: dict[str, list[bool]] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return self.successes / max(self.demos, 1)


def collect_scripted(
    family: TaskFamily,
    tasks: list[Task],
    demos_per_task: int,
    output: str | Path,
    noise: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    valid_every: int = 10,
    expert: ScriptedExpert | None = None,
    on_demo: Callable[[str, Episode], None] | None = None,
    source: str = "scripted",
) -> CollectStats:
    """Roll out the family's scripted expert (or ``expert``: e.g. a ``ZooExpert``, with ``source="experts"``)
    ``demos_per_task`` times per task, appending each demo to ``output``.

    Demos already in ``output`` keep their reset seeds to themselves: new ones use seeds not yet in the file.
    """
    expert = expert or expert_for(family)
    env = family.make_env(tasks[0] if tasks else None)
    writer = DemoWriter(output, make_env_args(family, env), valid_every=valid_every)
    used = used_seeds(output)
    rng = np.random.default_rng([seed, 0x5EED])
    stats = CollectStats()
    bar = tqdm(total=len(tasks) * demos_per_task, desc=f"collect {family.name}", unit="demo", disable=not progress)
    try:
        for task in tasks:
            for reset_seed in fresh_seeds(seed, task, demos_per_task, used):
                ep = run_episode(env, task, lambda _o, info: expert.act(info["state"]), source, reset_seed, expert, noise, rng)
                name = writer.append(ep)
                stats.demos += 1
                stats.successes += int(ep.success)
                stats.per_task.setdefault(task.task_id, []).append(ep.success)
                bar.update(1)
                bar.set_postfix(success=f"{stats.success_rate:.0%}")
                if on_demo:
                    on_demo(name, ep)
    finally:
        bar.close()
        env.close()
    return stats

