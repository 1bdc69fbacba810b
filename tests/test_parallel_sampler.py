"""The shared-memory parallel sampler: same episodes as the in-process one, clear errors on worker faults."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch

from robot_envs import Task, make_family
from tests.helpers import tiny_policy
from vision_gmps.rollouts import PolicyActor, RolloutBatch, Sampler
from vision_gmps.sampling.shm_vector import SamplerWorkerError

NUM_ENVS = 5  # split 3 + 2 over two workers; 4 tasks x 3 episodes = 12 jobs: the last wave is padded


@pytest.fixture(scope="module")
def family():
    return make_family("point", image_size=(8, 8))


def collect(sampler: Sampler, family, seed: int = 3, act=None) -> RolloutBatch:
    policy = tiny_policy(torch.float32)
    tasks = family.sample("train", 4)
    act = act or PolicyActor(policy, [policy.params()] * len(tasks), seed=seed)
    return sampler.collect(tasks, 3, act, seed=seed)


def assert_same_episodes(a: RolloutBatch, b: RolloutBatch) -> None:
    for name in ("task_index", "images", "proprio", "actions", "rewards", "success"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    for group in ("states", "extras"):
        x, y = getattr(a, group), getattr(b, group)
        assert list(x) == list(y), group
        for key in x:
            assert x[key].dtype == y[key].dtype and np.array_equal(x[key], y[key]), f"{group}/{key}"


@pytest.fixture(scope="module")
def reference(family) -> RolloutBatch:
    sampler = Sampler(family, NUM_ENVS, "sync")
    try:
        return collect(sampler, family)
    finally:
        sampler.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_parallel_matches_in_process_sampler(family, reference, workers):
    sampler = Sampler(family, NUM_ENVS, "parallel", workers=workers)
    try:
        batch = collect(sampler, family)
        assert_same_episodes(batch, reference)
        assert not np.array_equal(collect(sampler, family, seed=4).actions, reference.actions)  # seeds matter
    finally:
        sampler.close()


class SignalWorker(PolicyActor):
    """Acts like the policy, but sends a signal to sampler worker 0 at one control step."""

    def __init__(self, sampler: Sampler, sig: int, at_call: int, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pid, self.sig, self.at_call, self.calls = sampler.vec.worker_pids[0], sig, at_call, 0

    def __call__(self, obs, states, groups):
        self.calls += 1
        if self.calls == self.at_call:
            os.kill(self.pid, self.sig)
        return super().__call__(obs, states, groups)


@pytest.mark.parametrize(("sig", "message"), [(signal.SIGKILL, "exited with code -9"), (signal.SIGSTOP, "did not finish step")])
def test_dead_or_hung_worker_is_a_clear_error(family, sig, message):
    sampler = Sampler(family, NUM_ENVS, "parallel", workers=2, timeout_s=3.0)
    procs = list(sampler.vec._procs)
    policy = tiny_policy(torch.float32)
    act = SignalWorker(sampler, sig, 7, policy, [policy.params()] * 4, seed=0)
    try:
        with pytest.raises(SamplerWorkerError, match=message):
            collect(sampler, family, act=act)
    finally:
        sampler.close()  # already closed by the error; closing again is harmless
    assert not any(p.is_alive() for p in procs)  # no worker left behind


def test_worker_exception_carries_its_traceback(family):
    sampler = Sampler(family, 2, "parallel", workers=2)
    try:
        broken = Task("point", "train", 0, {})  # no goal parameters: the env raises in the worker
        with pytest.raises(SamplerWorkerError, match="(?s)raised while reset.*KeyError"):
            sampler.collect([broken], 2, lambda *a: np.zeros((2, 2)), seed=0)
    finally:
        sampler.close()


def test_bad_backend_and_worker_count_are_rejected(family):
    with pytest.raises(ValueError, match="unknown sampler.backend 'paralel'"):
        Sampler(family, 2, "paralel")
    with pytest.raises(ValueError, match="sampler.workers must be >= 1"):
        Sampler(family, 2, "parallel", workers=0)
