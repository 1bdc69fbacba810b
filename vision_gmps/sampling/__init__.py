"""Sampler backends: where the envs of a ``Sampler`` step (see ``vision_gmps.rollouts.Sampler``).

* ``sync``: gymnasium's ``SyncVectorEnv`` in the learner's process (tests, debugging).
* ``async``: gymnasium's ``AsyncVectorEnv``, one subprocess per env (kept for comparison).
* ``parallel``: ``SharedMemoryVectorEnv``, ``workers`` processes each stepping several envs,
  observations in shared memory, the policy batched in the learner (the fast local path).
* ``ray``: ``RayWaveRunner``, Ray actors on a local or remote cluster that hold the policy and
  return whole waves of episodes; a dead or hung actor is replaced and its wave run again.
  The ``Sampler`` builds it itself (it is not a vector env: nothing steps in the learner).

All four give identical episodes for the same seed and ``num_envs``. This module imports no
backend until it is asked for, so ``ray`` stays optional.
"""

from __future__ import annotations

from typing import Any

from robot_envs import TaskFamily

BACKENDS: tuple[str, ...] = ("sync", "async", "parallel", "ray")


def make_vector_env(
    family: TaskFamily,
    num_envs: int,
    backend: str = "sync",
    workers: int = 2,
    timeout_s: float = 120.0,
    ray_address: str | None = None,
) -> Any:
    """A local vector env with the ``set_attr``/``reset``/``step``/``close`` subset the ``Sampler`` uses."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown sampler.backend {backend!r}; use one of {BACKENDS}")
    if num_envs < 1:
        raise ValueError(f"sampler.num_envs must be >= 1, got {num_envs}")
    if backend in ("sync", "async"):
        from robot_envs.vector import make_vector_env as make_gym_vector_env

        return make_gym_vector_env(family, num_envs, backend)
    if backend == "parallel":
        from vision_gmps.sampling.shm_vector import SharedMemoryVectorEnv

        return SharedMemoryVectorEnv(family, num_envs, workers, timeout_s)
    raise ValueError("sampler.backend=ray runs whole waves on Ray actors, not a local vector env: "
                     "use vision_gmps.rollouts.Sampler, which builds it")
