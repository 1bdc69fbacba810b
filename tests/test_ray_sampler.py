"""The Ray sampler backend on a local 2-CPU Ray: same episodes as the local samplers; lost workers survived."""

from __future__ import annotations

import time

import pytest
import torch

from tests.helpers import tiny_policy
from tests.test_parallel_sampler import NUM_ENVS, assert_same_episodes, collect, family, reference  # noqa: F401
from vision_gmps.rollouts import PolicyActor, Sampler

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sampler(family):  # noqa: F811
    s = Sampler(family, NUM_ENVS, "ray", workers=2, timeout_s=5.0)
    yield s
    s.close()


def test_ray_matches_local_samplers(family, reference, sampler):  # noqa: F811
    assert_same_episodes(collect(sampler, family), reference)


class FaultAt(PolicyActor):
    """Acts like the policy; at one control step, does ``fault(sampler)`` first (kill or hang an actor)."""

    def __init__(self, sampler: Sampler, fault, at_call: int, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sampler, self.fault, self.at_call, self.calls = sampler, fault, at_call, 0

    def __call__(self, obs, states, groups):
        self.calls += 1
        if self.calls == self.at_call:
            self.fault(self.sampler)
        return super().__call__(obs, states, groups)


def kill_actor(sampler: Sampler) -> None:
    ray.kill(sampler.vec.actors[0], no_restart=True)


def hang_actor(sampler: Sampler) -> None:
    sampler.vec.actors[1].__ray_call__.remote(lambda self: time.sleep(60))  # its next step waits behind this


@pytest.mark.parametrize("fault", [kill_actor, hang_actor])
def test_lost_actor_is_replaced_and_the_batch_is_unchanged(family, reference, sampler, fault):  # noqa: F811
    policy = tiny_policy(torch.float32)
    restarts = sampler.vec.restarts
    act = FaultAt(sampler, fault, 12, policy, [policy.params()] * 4, seed=3)  # mid-way through the second wave
    assert_same_episodes(collect(sampler, family, act=act), reference)
    assert sampler.vec.restarts == restarts + 1
