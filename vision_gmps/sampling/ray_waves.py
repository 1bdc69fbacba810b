"""Waves of episodes on Ray actors, on this machine or a cluster: parameters out, episodes back.

Each of ``workers`` actors holds ``num_envs`` envs (a gymnasium ``SyncVectorEnv``, as the
``sync`` backend) and runs whole waves (``vision_gmps.rollouts.run_wave``) with the acting
function it is sent: the policy and its per-task parameters, put in Ray's object store once
per collection and shared by every actor. The learner only hands out waves and receives
their episodes, so it does no work per control step, and a slow actor holds up nobody:
waves go to whichever actor is free.

A wave is a pure function of its jobs, seeds and the acting function, computed on the same
batch as a local sampler with the same ``num_envs`` would compute it; so the batch is
identical to the local backends' for the same seed, whatever the worker count or the order
in which waves come back (tested). On another machine this holds as long as torch does the
same arithmetic there (same torch build and CPU instruction set).

Faults: an actor that died (``RayActorError``) or did not return its wave within
``timeout_s`` is killed and replaced, and the wave runs again from its start; after
``max_restarts`` losses of one wave the collection stops with an error. An exception raised
by an env or the policy (a bug, not a lost worker) is reported at once, with its traceback.

Ray serialises the acting function and the episodes with pickle between the learner and its
own actors: a Ray cluster is a trusted boundary (Ray's own security model), and nothing here
listens on a socket.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from robot_envs import TaskFamily
from vision_gmps.sampling.shm_vector import SamplerWorkerError

log = logging.getLogger(__name__)


def use_full_priority() -> None:
    """Run the Ray we start with workers at normal priority, unless the user set it.

    Ray renices its workers to 15 (``worker_niceness``) to keep its own daemons responsive.
    On a machine where the learner or anything else also runs, that starves the actors: on
    this 2-core machine next to two training runs an actor stepped push 14x slower than the
    learner's process did (101 vs 7 ms per step). A cluster keeps its own setting.
    """
    os.environ.setdefault("RAY_worker_niceness", "0")


def _import_ray():
    try:
        import ray
    except ImportError as err:
        raise ImportError("sampler.backend=ray needs Ray: pip install 'vision-gmps[ray]' (or pip install ray)") from err
    return ray


class WaveActor:
    """What one Ray actor holds: ``num_envs`` envs. Wrapped with ``ray.remote`` when the runner starts."""

    def __init__(self, family: TaskFamily, num_envs: int) -> None:
        import torch

        from robot_envs.vector import make_vector_env

        torch.set_num_threads(1)  # one CPU per actor (num_cpus=1): more threads would fight the other actors
        self.family = family
        self.vec = make_vector_env(family, num_envs, "sync")

    def run_wave(self, act: Any, wave: Any) -> dict:
        from vision_gmps.rollouts import run_wave

        return run_wave(self.vec, self.family.horizon, self.family.step_metrics, wave, act)

    def close(self) -> None:
        self.vec.close()


class RayWaveRunner:
    """``workers`` actors of ``num_envs`` envs each; ``run_waves`` returns every wave's episodes, in order."""

    def __init__(
        self,
        family: TaskFamily,
        num_envs: int,
        workers: int = 2,
        timeout_s: float = 120.0,
        address: str | None = None,
        max_restarts: int = 3,
        start_timeout_s: float = 300.0,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"sampler.num_envs must be >= 1, got {num_envs}")
        if workers < 1:
            raise ValueError(f"sampler.workers must be >= 1, got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"sampler.timeout_s must be > 0, got {timeout_s}")
        ray = self._ray = _import_ray()
        self._own_ray = not ray.is_initialized()
        if self._own_ray:
            # address=None starts a local Ray (all cores); "auto" or "host:port" joins a running cluster.
            if address is None:
                use_full_priority()
            ray.init(address=address, include_dashboard=False, log_to_driver=True)
        self.family, self.num_envs = family, num_envs
        self.timeout_s, self.start_timeout_s, self.max_restarts = float(timeout_s), float(start_timeout_s), max_restarts
        self._remote_cls = ray.remote(num_cpus=1, max_restarts=0)(WaveActor)
        self.actors: list[Any] = [None] * workers
        self.restarts = 0  # actors replaced over this runner's life (for logs and tests)
        free = self._free_cpus(workers)
        if free < workers:
            message = f"sampler.workers={workers} Ray actors need {workers} CPUs, and Ray has {free:g} free"
            if address is None:  # the local Ray we started: no CPU will ever appear, so waiting would hang
                raise SamplerWorkerError(f"{message}; lower sampler.workers")
            # A cluster may autoscale: its nodes appear only once actors ask for them. Wait, up to
            # start_timeout_s per actor, rather than refuse.
            log.warning("%s now; waiting up to %g s per actor for the cluster to add nodes", message, self.start_timeout_s)
        try:
            for i in range(workers):
                self.actors[i] = self._start_actor(i)
        except BaseException:
            self.close()
            raise

    def _free_cpus(self, wanted: int, wait_s: float = 10.0) -> float:
        """Ray's free CPUs, waiting a little for actors just killed (ray.kill frees their CPU asynchronously)."""
        end = time.monotonic() + wait_s
        total = self._ray.cluster_resources().get("CPU", 0)
        while True:
            free = self._ray.available_resources().get("CPU", 0)
            if free >= wanted or total < wanted or time.monotonic() > end:
                return free
            time.sleep(0.2)

    def _start_actor(self, i: int):
        actor = self._remote_cls.remote(self.family, self.num_envs)
        try:
            self._ray.get(actor.__ray_ready__.remote(), timeout=self.start_timeout_s)
        except self._ray.exceptions.RayTaskError as err:
            raise SamplerWorkerError(f"Ray env actor {i} raised while starting its envs:\n{err}") from None
        except (self._ray.exceptions.GetTimeoutError, self._ray.exceptions.RayActorError) as err:
            free = self._ray.available_resources().get("CPU", 0)
            raise SamplerWorkerError(f"Ray env actor {i} did not start: {type(err).__name__}: {err} (each actor needs one "
                                     f"CPU and Ray has {free:g} free: lower sampler.workers or add nodes)") from None
        return actor

    def _replace(self, i: int) -> None:
        self._ray.kill(self.actors[i], no_restart=True)
        self.restarts += 1
        self.actors[i] = self._start_actor(i)

    def run_waves(self, waves: list, act: Any, on_done: Callable[[Any], None] | None = None) -> list[dict]:
        """Run ``waves`` (``vision_gmps.rollouts.Wave``) with ``act`` on the actors; a lost wave runs again."""
        ray = self._ray
        act_ref = ray.put(act)  # one copy in the object store, read by every actor
        results: list[dict | None] = [None] * len(waves)
        pending = deque(range(len(waves)))
        losses = [0] * len(waves)
        idle = list(range(len(self.actors)))
        running: dict[Any, tuple[int, int, float]] = {}  # ref -> (actor, wave, deadline)

        def lost(i: int, w: int, why: str) -> None:
            losses[w] += 1
            if losses[w] > self.max_restarts:
                raise SamplerWorkerError(f"wave {w} was lost {losses[w]} times (last: actor {i} {why}); "
                                         f"giving up (sampler.timeout_s={self.timeout_s:g})")
            started = time.monotonic()
            self._replace(i)
            # the others' clocks stop while this runner waits for the new actor: they were not late
            paused = time.monotonic() - started
            for ref, (j, v, deadline) in running.items():
                running[ref] = (j, v, deadline + paused)
            idle.append(i)
            pending.appendleft(w)

        while pending or running:
            while pending and idle:
                i, w = idle.pop(), pending.popleft()
                ref = self.actors[i].run_wave.remote(act_ref, waves[w])
                running[ref] = (i, w, time.monotonic() + self.timeout_s)
            wait = max(0.0, min(deadline for _, _, deadline in running.values()) - time.monotonic())
            ready, _ = ray.wait(list(running), num_returns=1, timeout=wait)
            for ref in ready:
                i, w, _ = running.pop(ref)
                try:
                    results[w] = ray.get(ref)
                except ray.exceptions.RayTaskError as err:
                    raise SamplerWorkerError(f"env actor {i} raised while running wave {w}:\n{err}") from None
                except ray.exceptions.RayActorError:
                    lost(i, w, "died")
                    continue
                idle.append(i)
                if on_done is not None:
                    on_done(waves[w])
            now = time.monotonic()
            for ref, (i, w, deadline) in list(running.items()):
                if deadline <= now:  # hung: its wave runs again on a fresh actor
                    del running[ref]
                    lost(i, w, f"did not return within {self.timeout_s:g} s")
        return results  # type: ignore[return-value]

    def close(self) -> None:
        ray = self._ray
        for actor in self.actors:
            if actor is not None:
                try:
                    ray.get(actor.close.remote(), timeout=10)
                except Exception:  # noqa: BLE001  a dead or hung actor: killed below anyway
                    pass
                ray.kill(actor, no_restart=True)
        self.actors = [None] * len(self.actors)
        if self._own_ray and ray.is_initialized():
            ray.shutdown()
            self._own_ray = False
