"""The Ray sampler backend on a local 2-CPU Ray: actors hold the policy and send back whole waves.

Same episodes as the local samplers whatever the worker count; a worker that dies or hangs
mid-wave is replaced and its wave run again, so the batch is complete and unchanged.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from tests.helpers import tiny_policy
from tests.test_parallel_sampler import NUM_ENVS, assert_same_episodes, collect, family, reference  # noqa: F401
from vision_gmps.rollouts import PolicyActor, Sampler
from vision_gmps.sampling.ray_waves import use_full_priority
from vision_gmps.sampling.shm_vector import SamplerWorkerError

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # 3 logical CPUs on the 2 cores: the shared 2-actor sampler and a 1-actor one at the same time
    use_full_priority()  # actors at normal priority, as the sampler's own Ray runs them
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sampler(family):  # noqa: F811
    s = Sampler(family, NUM_ENVS, "ray", workers=2, timeout_s=5.0)
    yield s
    s.close()


def test_ray_matches_local_samplers_with_one_or_two_workers(family, reference, sampler):  # noqa: F811
    assert_same_episodes(collect(sampler, family), reference)
    one = Sampler(family, NUM_ENVS, "ray", workers=1, timeout_s=5.0)
    try:
        assert_same_episodes(collect(one, family), reference)
        assert not np.array_equal(collect(one, family, seed=4).actions, reference.actions)  # seeds matter
    finally:
        one.close()


def test_more_workers_than_the_cluster_has_cpus_is_a_clear_error(family):  # noqa: F811
    with pytest.raises(SamplerWorkerError, match=r"need 4 CPUs, and Ray has [0-3] free; lower sampler.workers"):
        Sampler(family, NUM_ENVS, "ray", workers=4)


def test_a_cluster_short_of_cpus_is_waited_for_then_a_clear_error(family, caplog):  # noqa: F811
    # With ray.address set the cluster may autoscale, so the sampler warns and waits for nodes
    # instead of refusing; a cluster that never grows ends in an error once an actor cannot start.
    from vision_gmps.sampling.ray_waves import RayWaveRunner

    with caplog.at_level("WARNING"), pytest.raises(SamplerWorkerError, match=r"did not start.*lower sampler.workers or add nodes"):
        RayWaveRunner(family, NUM_ENVS, workers=4, address="auto", start_timeout_s=3.0)
    assert "waiting up to 3 s per actor for the cluster to add nodes" in caplog.text


class FaultOnce(PolicyActor):
    """Acts like the policy, but the first actor to reach one control step dies or hangs there.

    The act object is copied into every actor, so "first" is decided by a marker file: the
    replacement actor, rerunning the wave, finds the marker and acts normally.
    """

    def __init__(self, marker: str, fault: str, at_call: int, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.marker, self.fault, self.at_call, self.calls = marker, fault, at_call, 0

    def __call__(self, obs, states, groups):
        self.calls += 1
        if self.calls == self.at_call and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            if self.fault == "die":
                os._exit(1)
            time.sleep(60)  # hung: the runner's timeout (5 s here) must notice
        return super().__call__(obs, states, groups)


@pytest.mark.parametrize("fault", ["die", "hang"])
def test_lost_actor_is_replaced_and_the_batch_is_unchanged(family, reference, sampler, fault, tmp_path):  # noqa: F811
    policy = tiny_policy(torch.float32)
    restarts = sampler.remote.restarts
    act = FaultOnce(str(tmp_path / "fault"), fault, 4, policy, [policy.params()] * 4, seed=3)  # mid-wave
    assert_same_episodes(collect(sampler, family, act=act), reference)
    assert (tmp_path / "fault").exists() and sampler.remote.restarts == restarts + 1


class Broken(PolicyActor):
    def __call__(self, obs, states, groups):
        raise RuntimeError("policy bug")


def test_an_error_inside_an_actor_is_reported_at_once_with_its_cause(family, sampler):  # noqa: F811
    policy = tiny_policy(torch.float32)
    restarts = sampler.remote.restarts
    with pytest.raises(SamplerWorkerError, match="policy bug"):
        collect(sampler, family, act=Broken(policy, [policy.params()] * 4))
    assert sampler.remote.restarts == restarts  # a bug is not retried as if a worker were lost
