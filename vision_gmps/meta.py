"""Meta-objectives on top of the shared inner loop.

* ``gmps_loss``: imitation of expert actions by each task's *adapted* policy
  (Guided Meta-Policy Search, Mendonca et al. 2019), differentiated through the
  inner step.
* ``maml_loss``: the same inner step with a policy-gradient outer objective on
  rollouts of the adapted policy (MAML for RL; clipped ratio as in ProMP/PPO so
  several Adam steps can reuse one post-update batch).
* ``bc_loss``: multi-task behaviour cloning of the un-adapted policy (the
  "pre-train then fine-tune" baseline).

All three evaluate the conv encoder once per call on the concatenation of
every task's images; only the head is evaluated per task. A batch of rollouts
that serves many outer steps is converted to the encoder's float input once
(``batch_pixels``) and passed in as ``pre_pixels`` / ``post_pixels``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vision_gmps.inner import TaskBatch, adapt, policy_log_prob
from vision_gmps.policy import ConvGaussianPolicy, Params

IMITATION_LOSSES = ("mse", "nll")
ExpertBatch = tuple[Tensor, Tensor, Tensor]  # images uint8, proprio, actions


def imitation_loss(mean: Tensor, log_std: Tensor, actions: Tensor, kind: str) -> Tensor:
    if kind == "mse":
        return F.mse_loss(mean, actions)
    if kind == "nll":
        return -ConvGaussianPolicy.log_prob(mean, log_std, actions).mean()
    raise ValueError(f"unknown imitation loss {kind!r}; use one of {IMITATION_LOSSES}")


def batch_pixels(policy: ConvGaussianPolicy, task_batches: list[TaskBatch]) -> Tensor | None:
    """Every task's images as one encoder input, to reuse at each outer step (None if the encoder adapts)."""
    if policy.encoder_adapted:
        return None
    return policy.pixels(torch.cat([tb.images for tb in task_batches]))


def _shared_features(
    policy: ConvGaussianPolicy, params: Params, images: list[Tensor], pixels: Tensor | None = None
) -> list[Tensor] | None:
    """One encoder pass over all tasks' images, split back per task (None if the encoder adapts).

    ``pixels``: the same images already converted (``batch_pixels``)."""
    if policy.encoder_adapted:
        return None
    sizes = [len(x) for x in images]
    if pixels is None:
        pixels = policy.pixels(torch.cat(images))
    elif len(pixels) != sum(sizes):
        raise ValueError(f"pixels hold {len(pixels)} images but the task batches {sum(sizes)}: "
                         "pass batch_pixels() of these same batches")
    return list(torch.split(policy.encode_pixels(pixels, params), sizes))


def adapt_all(
    policy: ConvGaussianPolicy,
    params: Params,
    step_sizes: Params,
    task_batches: list[TaskBatch],
    steps: int,
    create_graph: bool,
    pixels: Tensor | None = None,
    natural_scale: float | None = None,
) -> list[Params]:
    """Each task's adapted parameters; ``natural_scale``: natural output-layer steps instead of gradient steps."""
    features = _shared_features(policy, params, [tb.images for tb in task_batches], pixels)
    return [
        adapt(policy, params, step_sizes, tb, steps, create_graph, None if features is None else features[i],
              natural_scale)
        for i, tb in enumerate(task_batches)
    ]


def gmps_loss(
    policy: ConvGaussianPolicy,
    params: Params,
    step_sizes: Params,
    task_batches: list[TaskBatch],
    expert_batches: list[ExpertBatch],
    inner_steps: int = 1,
    create_graph: bool = True,
    kind: str = "mse",
    pre_pixels: Tensor | None = None,
    natural_scale: float | None = None,
) -> Tensor:
    """Mean over tasks of the adapted policy's imitation loss on that task's expert data."""
    phis = adapt_all(policy, params, step_sizes, task_batches, inner_steps, create_graph, pre_pixels, natural_scale)
    features = _shared_features(policy, params, [e[0] for e in expert_batches])
    losses = []
    for i, (phi, (images, proprio, actions)) in enumerate(zip(phis, expert_batches)):
        feats = features[i] if features is not None else policy.encode(images, phi)
        losses.append(imitation_loss(policy.head_mean(feats, proprio, phi), phi["log_std"], actions, kind))
    return torch.stack(losses).mean()


def maml_loss(
    policy: ConvGaussianPolicy,
    params: Params,
    step_sizes: Params,
    pre_batches: list[TaskBatch],
    post_batches: list[TaskBatch],
    inner_steps: int = 1,
    create_graph: bool = True,
    clip: float = 0.2,
    pre_pixels: Tensor | None = None,
    post_pixels: Tensor | None = None,
    natural_scale: float | None = None,
) -> Tensor:
    """Negative clipped policy-gradient objective of the adapted policies on their own rollouts."""
    phis = adapt_all(policy, params, step_sizes, pre_batches, inner_steps, create_graph, pre_pixels, natural_scale)
    features = _shared_features(policy, params, [tb.images for tb in post_batches], post_pixels)
    losses = []
    for i, (phi, tb) in enumerate(zip(phis, post_batches)):
        logp = policy_log_prob(policy, phi, tb, None if features is None else features[i])
        ratio = torch.exp(logp - tb.logp_old)
        clipped = torch.clamp(ratio, 1 - clip, 1 + clip)
        losses.append(-torch.min(ratio * tb.advantages, clipped * tb.advantages).mean())
    return torch.stack(losses).mean()


def bc_loss(
    policy: ConvGaussianPolicy, params: Params, expert_batches: list[ExpertBatch], kind: str = "mse",
    task_latents: Tensor | None = None,
) -> Tensor:
    """Multi-task imitation; ``task_latents`` [tasks, D]: each batch's task acts with its own input latent."""
    features = policy.encode(torch.cat([e[0] for e in expert_batches]), params)
    proprio = torch.cat([e[1] for e in expert_batches])
    actions = torch.cat([e[2] for e in expert_batches])
    latents = None
    if task_latents is not None:
        latents = torch.cat([task_latents[i].expand(len(e[2]), -1) for i, e in enumerate(expert_batches)])
    return imitation_loss(policy.head_mean(features, proprio, params, latents), params["log_std"], actions, kind)
