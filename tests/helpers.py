"""Small builders shared by the tests: tiny policies and synthetic batches."""

from __future__ import annotations

import torch

from vision_gmps.inner import TaskBatch, policy_log_prob
from vision_gmps.policy import ConvGaussianPolicy, PolicySpec


def tiny_policy(
    dtype: torch.dtype = torch.float64, image: int = 8, seed: int = 0, offset_log_std: float | None = None,
    latent_log_std: float | None = None,
) -> ConvGaussianPolicy:
    torch.manual_seed(seed)
    spec = PolicySpec(
        image_shape=(image, image, 3),
        proprio_dim=2,
        action_dim=2,
        conv_channels=(3,),
        conv_strides=(2,),
        hidden_sizes=(6,),
        bias_transform_dim=2,
        adapt=("head", "bias_transform") if offset_log_std is None else ("head", "bias_transform", "action_offset"),
        offset_log_std=offset_log_std,
        latent_log_std=latent_log_std,
    )
    policy = ConvGaussianPolicy(spec).to(dtype)
    with torch.no_grad():  # a less degenerate head than the near-zero init, so curvature shows
        policy.head[-1].weight.normal_(0, 0.5)
    return policy


def synthetic_task_batch(policy: ConvGaussianPolicy, n: int = 12, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    h, w, _ = policy.spec.image_shape
    dtype = policy.log_std.dtype
    tb = TaskBatch(
        images=torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8),
        proprio=torch.randn(n, policy.spec.proprio_dim, generator=g, dtype=dtype),
        actions=torch.randn(n, policy.spec.action_dim, generator=g, dtype=dtype),
        advantages=torch.randn(n, generator=g, dtype=dtype),
        logp_old=torch.empty(0),
    )
    if policy.has_episode_noise:  # episodes of 4 steps, each with its own offset or latent
        width = policy.episode_noise_distribution(policy.params())[0].numel()
        episode_offsets = torch.randn(n // 4, width, generator=g, dtype=dtype) * 0.5
        tb.offsets = episode_offsets.repeat_interleave(4, dim=0)
    with torch.no_grad():
        tb.logp_old = policy_log_prob(policy, policy.params(), tb)
    return tb


def synthetic_expert_batch(policy: ConvGaussianPolicy, n: int = 10, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    h, w, _ = policy.spec.image_shape
    dtype = policy.log_std.dtype
    return (
        torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8),
        torch.randn(n, policy.spec.proprio_dim, generator=g, dtype=dtype),
        torch.rand(n, policy.spec.action_dim, generator=g, dtype=dtype) * 2 - 1,
    )
