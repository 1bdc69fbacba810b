"""N envs of one family stepped together: in-process (``sync``) or in subprocess workers (``async``).

Built on gymnasium's vector envs. Samplers assign a task per worker with
``vec.set_attr("task", [task_0, ..., task_{n-1}])`` before ``reset`` and run exactly
``horizon`` steps, so gymnasium's autoreset never fires inside an episode.
"""

from __future__ import annotations

import gymnasium as gym

from robot_envs.base import TaskFamily

BACKENDS = ("sync", "async")


def make_vector_env(family: TaskFamily, num_envs: int, backend: str = "sync") -> gym.vector.VectorEnv:
    if backend not in BACKENDS:
        raise ValueError(f"unknown sampler backend {backend!r}; use one of {BACKENDS}")
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    fns = [family.make_env for _ in range(num_envs)]
    if backend == "sync":
        return gym.vector.SyncVectorEnv(fns)
    # forkserver: workers start clean (no copied torch/GL state) and it works on every platform we run.
    return gym.vector.AsyncVectorEnv(fns, context="forkserver")
