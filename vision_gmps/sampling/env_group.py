"""A few envs of one family stepped in one process: what each worker of the ``parallel`` backend runs.

Imports only numpy and ``robot_envs`` (never torch), so a worker process
holding envs stays small. Observations and infos are stacked exactly as gymnasium's
``SyncVectorEnv`` stacks them (observation-space dtypes, float64 rewards, infos as arrays),
so a sampler sees the same numbers whichever backend stepped the envs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_envs import Task, TaskFamily

Arrays = dict[str, Any]  # nested dict of numpy arrays, leading dimension = envs


def stack_infos(infos: list[dict[str, Any]]) -> Arrays:
    """``[info_0, ..., info_k]`` -> ``{key: array[k, ...], "_key": all-True mask}``, as ``SyncVectorEnv`` does.

    The ``_key`` masks (which envs reported ``key``) are kept because the sampler stores
    ``info["state"]`` as it comes, masks included; every env reports every key every step.
    """
    out: Arrays = {}
    for key, value in infos[0].items():
        if isinstance(value, dict):
            out[key] = stack_infos([info[key] for info in infos])
        else:
            out[key] = np.stack([np.asarray(info[key]) for info in infos])
        out[f"_{key}"] = np.ones(len(infos), dtype=bool)
    return out


class EnvGroup:
    """``k`` envs of ``family``; ``reset`` assigns each a task and a seed, ``step`` takes a [k, A] action array."""

    def __init__(self, family: TaskFamily, num_envs: int) -> None:
        if num_envs < 1:
            raise ValueError(f"an env group needs >= 1 env, got {num_envs}")
        self.envs = [family.make_env() for _ in range(num_envs)]
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space

    def __len__(self) -> int:
        return len(self.envs)

    def _obs(self, observations: list[dict[str, np.ndarray]]) -> Arrays:
        spaces = self.observation_space.spaces
        return {k: np.stack([np.asarray(o[k], dtype=spaces[k].dtype) for o in observations]) for k in spaces}

    def reset(self, tasks: list[Task], seeds: list[int]) -> tuple[Arrays, Arrays]:
        if len(tasks) != len(self.envs) or len(seeds) != len(self.envs):
            raise ValueError(f"reset needs {len(self.envs)} tasks and seeds, got {len(tasks)} and {len(seeds)}")
        results = []
        for env, task, seed in zip(self.envs, tasks, seeds):
            env.set_wrapper_attr("task", task)
            results.append(env.reset(seed=int(seed)))
        return self._obs([r[0] for r in results]), stack_infos([r[1] for r in results])

    def step(self, actions: np.ndarray) -> tuple[Arrays, np.ndarray, Arrays]:
        """(observations, rewards [k] float64, infos); episodes have fixed length, so no autoreset."""
        results = [env.step(action) for env, action in zip(self.envs, np.asarray(actions))]
        rewards = np.array([r[1] for r in results], dtype=np.float64)
        return self._obs([r[0] for r in results]), rewards, stack_infos([r[4] for r in results])

    def close(self) -> None:
        for env in self.envs:
            env.close()


class SplitVectorEnv:
    """``num_envs`` envs in contiguous slices, one per worker process (the ``parallel`` backend)."""

    def __init__(self, num_envs: int, workers: int) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if workers < 1:
            raise ValueError(f"sampler.workers must be >= 1, got {workers}")
        self.num_envs = num_envs
        slices = np.array_split(np.arange(num_envs), min(workers, num_envs))
        self._bounds = [(int(s[0]), int(s[-1]) + 1) for s in slices]
        self._tasks: list[Task] | None = None

    def set_attr(self, name: str, values: list) -> None:
        if name != "task" or len(values) != self.num_envs:
            raise ValueError(f"only set_attr('task', [one task per env]) is supported, got {name!r} with {len(values)} values")
        self._tasks = list(values)

    def _reset_seeds(self, seed: list[int]) -> list[int]:
        if self._tasks is None:
            raise RuntimeError("set_attr('task', tasks) must come before reset")
        if len(seed) != self.num_envs:
            raise ValueError(f"reset needs {self.num_envs} seeds, got {len(seed)}")
        return [int(s) for s in seed]
