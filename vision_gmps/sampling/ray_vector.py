"""Env groups as Ray actors, on this machine or a cluster; a dead or hung actor is replaced.

``RayVectorEnv`` has the same ``VectorEnv`` subset as ``SharedMemoryVectorEnv``: the
``Sampler`` calls the policy once per control step on all ``num_envs`` envs in the learner,
and each of ``workers`` actors steps its slice of envs (``EnvGroup``). So episodes are
identical to the ``sync`` and ``parallel`` backends for the same seeds, whatever the
worker count or the order in which actors answer.

Faults: every ``ray.get`` has a timeout. An actor that died (``RayActorError``) or did not
answer within ``timeout_s`` is killed and replaced by a fresh one, which replays the current
wave: the same tasks and seeds, then every action the learner has sent since the wave's
reset. Envs are deterministic given seed and actions (tested), so the replayed actor is
in exactly the state the lost one was, and the batch is complete and unchanged. After
``max_restarts`` replacements in one wave the sampler gives up with an error. An exception
raised by an env (a bug, not a lost worker) is reported at once, with its traceback.

Ray serialises arguments with pickle between the learner and its own actors; a Ray cluster
is a trusted boundary (Ray's own security model), and nothing here listens on a socket.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_envs import Task, TaskFamily
from vision_gmps.sampling.env_group import Arrays, EnvGroup, SplitVectorEnv
from vision_gmps.sampling.shm_vector import SamplerWorkerError


def _import_ray():
    try:
        import ray
    except ImportError as err:
        raise ImportError("sampler.backend=ray needs Ray: pip install 'vision-gmps[ray]' (or pip install ray)") from err
    return ray


class EnvActor:
    """What one Ray actor holds: an ``EnvGroup``. Wrapped with ``ray.remote`` when the backend starts."""

    def __init__(self, family: TaskFamily, num_envs: int) -> None:
        self.group = EnvGroup(family, num_envs)

    def spaces(self) -> tuple[Any, Any]:
        return self.group.observation_space, self.group.action_space

    def reset(self, tasks: list[Task], seeds: list[int]) -> tuple[Arrays, Arrays]:
        return self.group.reset(tasks, seeds)

    def step(self, actions: np.ndarray) -> tuple[Arrays, np.ndarray, Arrays]:
        return self.group.step(actions)

    def replay(self, tasks: list[Task], seeds: list[int], actions: list[np.ndarray]) -> tuple:
        """Reset, then take ``actions`` in order; return what the last call returned."""
        result: tuple = self.group.reset(tasks, seeds)
        for action in actions:
            result = self.group.step(action)
        return result

    def close(self) -> None:
        self.group.close()


def _concat(trees: list[Any]) -> Any:
    if isinstance(trees[0], dict):
        return {k: _concat([t[k] for t in trees]) for k in trees[0]}
    return np.concatenate(trees)


class RayVectorEnv(SplitVectorEnv):
    """``num_envs`` envs over ``workers`` Ray actors; see the module docstring."""

    def __init__(
        self,
        family: TaskFamily,
        num_envs: int,
        workers: int = 2,
        timeout_s: float = 120.0,
        address: str | None = None,
        max_restarts: int = 3,
        start_timeout_s: float = 600.0,
    ) -> None:
        super().__init__(num_envs, workers)
        if timeout_s <= 0:
            raise ValueError(f"sampler.timeout_s must be > 0, got {timeout_s}")
        ray = self._ray = _import_ray()
        self._own_ray = not ray.is_initialized()
        if self._own_ray:
            # address=None starts a local Ray (all cores); "auto" or "host:port" joins a running cluster.
            ray.init(address=address, include_dashboard=False, log_to_driver=True)
        self.family = family
        self.timeout_s, self.start_timeout_s, self.max_restarts = float(timeout_s), float(start_timeout_s), max_restarts
        self._remote_cls = ray.remote(num_cpus=1, max_restarts=0)(EnvActor)
        self.actors: list[Any] = [None] * len(self._bounds)
        self.restarts = 0  # actors replaced over this env's life (for logs and tests)
        self._seeds: list[int] = []
        self._actions: list[np.ndarray] = []
        try:
            for i in range(len(self._bounds)):
                self.actors[i] = self._start_actor(i)
            self.single_observation_space, self.single_action_space = self._get(
                self.actors[0].spaces.remote(), "describing its envs", self.timeout_s)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ actors
    def _start_actor(self, i: int):
        a, b = self._bounds[i]
        actor = self._remote_cls.options(name=None).remote(self.family, b - a)
        self._get(actor.__ray_ready__.remote(), f"starting env actor {i}", self.start_timeout_s)
        return actor

    def _get(self, ref, what: str, timeout: float):
        try:
            return self._ray.get(ref, timeout=timeout)
        except self._ray.exceptions.RayTaskError as err:
            raise SamplerWorkerError(f"an env raised while {what}:\n{err}") from None
        except (self._ray.exceptions.GetTimeoutError, self._ray.exceptions.RayActorError) as err:
            raise SamplerWorkerError(f"Ray env actor failed while {what}: {type(err).__name__}: {err}") from None

    def _call(self, method: str, args_per_actor: list[tuple], what: str) -> list[Any]:
        """Call ``method`` on every actor; replace any that died or hung and replay the wave on it."""
        ray = self._ray
        refs = [getattr(actor, method).remote(*args) for actor, args in zip(self.actors, args_per_actor)]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.timeout_s)
        if len(ready) == len(refs):
            try:
                return ray.get(refs, timeout=self.timeout_s)  # the usual case: one call for all results
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError):
                pass  # sort out below which actor failed, and how
        results: list[Any] = [None] * len(refs)
        for i, ref in enumerate(refs):
            lost = ref not in ready
            if not lost:
                try:
                    results[i] = ray.get(ref, timeout=self.timeout_s)
                except ray.exceptions.RayTaskError as err:
                    raise SamplerWorkerError(f"env actor {i} raised while {what}:\n{err}") from None
                except ray.exceptions.RayActorError:
                    lost = True
            if lost:
                results[i] = self._replace_and_replay(i, what)
        return results

    def _replace_and_replay(self, i: int, what: str):
        a, b = self._bounds[i]
        for attempt in range(1, self.max_restarts + 1):
            self._ray.kill(self.actors[i], no_restart=True)
            self.restarts += 1
            try:
                self.actors[i] = self._start_actor(i)
                ref = self.actors[i].replay.remote(self._tasks[a:b], self._seeds[a:b], [x[a:b] for x in self._actions])
                # the replay redoes the wave so far: allow one timeout per step replayed
                return self._get(ref, f"replaying a wave after {what}", self.timeout_s * (1 + len(self._actions)))
            except SamplerWorkerError as err:
                if "an env raised" in str(err) or attempt == self.max_restarts:
                    raise SamplerWorkerError(f"env actor {i} was lost while {what} and could not be replaced "
                                             f"after {attempt} attempt(s): {err}") from None
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ VectorEnv subset
    def reset(self, seed: list[int]) -> tuple[Arrays, Arrays]:
        self._seeds, self._actions = self._reset_seeds(seed), []
        parts = self._call("reset", [(self._tasks[a:b], self._seeds[a:b]) for a, b in self._bounds], "reset")
        return _concat([p[0] for p in parts]), _concat([p[1] for p in parts])

    def step(self, actions: np.ndarray):
        actions = np.array(actions, copy=True)
        self._actions.append(actions)
        parts = self._call("step", [(actions[a:b],) for a, b in self._bounds], "step")
        done = np.zeros(self.num_envs, dtype=bool)
        obs, rewards, info = (_concat([p[k] for p in parts]) for k in range(3))
        return obs, rewards, done, done.copy(), info

    def close(self) -> None:
        ray = self._ray
        for actor in self.actors:
            if actor is not None:
                try:
                    ray.get(actor.close.remote(), timeout=10)
                except Exception:  # noqa: BLE001  a dead or hung actor: killed below anyway
                    pass
                ray.kill(actor, no_restart=True)
        self.actors = [None] * len(self._bounds)
        if self._own_ray and ray.is_initialized():
            ray.shutdown()
            self._own_ray = False
