"""Per-episode action-offset exploration: exact meta-gradient, the offset's score in the inner step,
offsets constant within an episode, and one reward-only step that points the offset at a hidden goal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_envs.point import PointFamily
from tests.helpers import synthetic_expert_batch, synthetic_task_batch, tiny_policy
from tests.test_meta_gradient import _analytic_and_fd
from vision_gmps.inner import adapt_detached, split_by_task, surrogate
from vision_gmps.meta import gmps_loss
from vision_gmps.policy import ConvGaussianPolicy, PolicySpec, StepSizes
from vision_gmps.rollouts import PolicyActor, Sampler


# Per-episode exploration at the output (action offset) and at the input (latent in place of the bias
# transform, tests/test_latent_exploration.py): the same two gradient checks, one per kind.
KINDS = {"offset": ({"offset_log_std": -1.0}, "action_offset", "offset_log_std"),
         "latent": ({"latent_log_std": -0.5}, "bias_transform", "latent_log_std")}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_gmps_meta_gradient_with_episode_noise_matches_finite_differences(kind):
    options, _, log_std_name = KINDS[kind]
    policy = tiny_policy(**options)
    step_sizes = StepSizes(policy, init=0.5).double()
    tasks = [synthetic_task_batch(policy, seed=s) for s in (0, 1)]
    experts = [synthetic_expert_batch(policy, seed=s) for s in (2, 3)]

    def objective(second_order: bool):
        return gmps_loss(policy, policy.params(), step_sizes.as_dict(), tasks, experts, create_graph=second_order)

    analytic, fd, grads = _analytic_and_fd(objective, policy, step_sizes)
    assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9)
    names = [n for n, _ in policy.named_parameters()]
    assert grads[names.index(log_std_name)].abs().sum() > 0  # reaches the outer loss through the inner step


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_inner_gradient_on_the_noise_mean_is_its_score_times_advantage(kind):
    """With input latents, sampled episodes feed their latent, not the bias transform, to the head:
    the bias transform's inner gradient is the latent's score alone."""
    options, mean_name, log_std_name = KINDS[kind]
    policy = tiny_policy(**{k: -0.5 for k in options})
    tb = synthetic_task_batch(policy, n=16)
    params = policy.params()
    (grad,) = torch.autograd.grad(surrogate(policy, params, tb), [params[mean_name]])
    sigma2 = torch.exp(2 * params[log_std_name]).detach()
    expected = ((tb.offsets - params[mean_name].detach()) / sigma2 * tb.advantages[:, None]).mean(0)
    torch.testing.assert_close(grad, expected)


def _point_policy(offset_log_std: float) -> ConvGaussianPolicy:
    torch.manual_seed(0)
    spec = PolicySpec(image_shape=(16, 16, 3), proprio_dim=2, action_dim=2, conv_channels=(4,), conv_strides=(2,),
                      hidden_sizes=(16,), init_log_std=-2.0, adapt=("action_offset",), offset_log_std=offset_log_std)
    return ConvGaussianPolicy(spec)


def test_sampled_offsets_are_constant_per_episode_and_absent_when_deterministic():
    family = PointFamily(image_size=(16, 16), horizon=5)
    policy = _point_policy(np.log(0.5))
    sampler = Sampler(family, num_envs=3)
    try:
        tasks = family.sample("train", 2, seed=0)
        params = [policy.params()] * 2
        batch = sampler.collect(tasks, 4, PolicyActor(policy, params, seed=0), seed=0)
        assert batch.offsets.shape == (8, 2)
        assert np.unique(batch.offsets.round(6), axis=0).shape[0] == 8  # one draw per episode
        assert batch.offsets.std() == pytest.approx(0.5, rel=0.5)
        greedy = sampler.collect(tasks, 1, PolicyActor(policy, params, deterministic=True), seed=0)
        assert greedy.offsets is None
    finally:
        sampler.close()


def test_one_reward_only_step_points_the_offset_at_the_hidden_goal():
    """Per-step noise this small (std 0.14 of a 0.1 step) never reaches the goal; the offsets do."""
    family = PointFamily(image_size=(16, 16), horizon=20)
    policy = _point_policy(np.log(0.7))
    sampler = Sampler(family, num_envs=20)
    try:
        task = family.sample("test", 1, seed=0)[0]
        goal = np.array([task.params["goal_x"], task.params["goal_y"]])
        batch = sampler.collect([task], 60, PolicyActor(policy, [policy.params()], seed=1), seed=1)
        assert 0.0 < batch.rewards.sum(1).astype(bool).mean() < 0.5  # some episodes found the goal
        (tb,) = split_by_task(policy, batch, [policy.params()], gamma=0.99, baseline="linear")
        step = StepSizes(policy, init=0.2).fixed(0.2)
        phi = adapt_detached(policy, policy.params(), step, tb)
        offset = phi["action_offset"].numpy()
        cosine = offset @ goal / (np.linalg.norm(offset) * np.linalg.norm(goal))
        assert cosine > 0.8, (offset, goal)
    finally:
        sampler.close()


def test_step_sizes_by_prefix_set_initial_and_fixed_values_and_reject_unknown_names():
    policy = tiny_policy(offset_log_std=-1.0)
    steps = StepSizes(policy, init=0.5, by_prefix={"action_offset": 0.05})
    learned = steps.as_dict()
    assert torch.all(learned["action_offset"] == 0.05) and torch.all(learned["head.0.weight"] == 0.5)
    fixed = steps.fixed(2.0)
    assert torch.all(fixed["action_offset"] == 0.05) and torch.all(fixed["bias_transform"] == 2.0)
    with pytest.raises(ValueError, match=r"inner_lr_by_param names \['head.9'\]"):
        StepSizes(policy, init=0.5, by_prefix={"head.9": 0.1})
