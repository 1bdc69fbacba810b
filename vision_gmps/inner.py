"""The inner loop: an importance-weighted policy-gradient step per task, with learned step sizes.

Surrogate for one task's on-policy batch, collected with parameters theta_old:

    J(theta) = mean_t[ exp(log pi_theta(a|s) - log pi_old(a|s)) * A ]

At theta = theta_old its gradient is the REINFORCE gradient mean(grad log pi * A);
at other theta it is the importance-corrected one, so one batch of rollouts
serves many outer steps. We keep the ratio *in* the graph rather than
detaching it as the reference code did: the first derivative is identical, and
the second derivative (which the meta-gradient needs) then includes the term
from the sampling distribution's dependence on theta (the DiCE / LVC Hessian),
so the meta-gradient is the exact derivative of the meta-objective and can be
checked against finite differences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from vision_gmps.advantages import task_advantages
from vision_gmps.policy import ConvGaussianPolicy, Params
from vision_gmps.rollouts import RolloutBatch


@dataclass
class TaskBatch:
    """One task's on-policy steps, flattened over episodes and time."""

    images: Tensor  # [M, H, W, 3] uint8
    proprio: Tensor  # [M, P]
    actions: Tensor  # [M, A]
    advantages: Tensor  # [M]
    logp_old: Tensor  # [M], log-density under the parameters that collected the batch
    offsets: Tensor | None = None  # [M, A] or [M, D] each step's episode offset or latent (per-episode exploration)


def split_by_task(
    policy: ConvGaussianPolicy,
    batch: RolloutBatch,
    params_per_task: list[Params],
    gamma: float,
    baseline: str,
) -> list[TaskBatch]:
    """Advantages per task, and ``logp_old`` from the same code path the surrogate uses.

    Computing ``logp_old`` with ``policy_log_prob`` (rather than keeping the sampler's
    numbers) makes the importance weights exactly 1 on fresh data.
    """
    adv = task_advantages(batch.rewards, batch.proprio, batch.task_index, gamma, baseline)
    dtype, device = policy.log_std.dtype, policy.log_std.device
    out = []
    for i, params in enumerate(params_per_task):
        rows = batch.episodes_of(i)
        flat = lambda x: torch.from_numpy(np.ascontiguousarray(x[rows].reshape(len(rows) * x.shape[1], *x.shape[2:])))  # noqa: E731
        tb = TaskBatch(
            images=flat(batch.images).to(device),
            proprio=flat(batch.proprio).to(device, dtype),
            actions=flat(batch.actions).to(device, dtype),
            advantages=flat(adv).to(device, dtype),
            logp_old=torch.empty(0),
            offsets=None if batch.offsets is None else torch.from_numpy(
                np.repeat(batch.offsets[rows], batch.actions.shape[1], axis=0)).to(device, dtype),
        )
        with torch.no_grad():
            tb.logp_old = policy_log_prob(policy, params, tb)
        out.append(tb)
    return out


def policy_log_prob(policy: ConvGaussianPolicy, params: Params, tb: TaskBatch, features: Tensor | None = None) -> Tensor:
    """Per-step log-density of the actions; with offset exploration, plus that of the episode's offset.

    Adding log N(z) to every step of the episode makes the surrogate's gradient the REINFORCE
    estimator of the joint (offset, actions) density: z is drawn before the first reward, so
    every step's advantage is credited to it.
    """
    if features is None:
        features = policy.encode(tb.images, params)
    mean = policy.head_mean(features, tb.proprio, params, tb.offsets)
    logp = policy.log_prob(mean, params["log_std"], tb.actions)
    if tb.offsets is not None:
        logp = logp + policy.offset_log_prob(tb.offsets, params)
    return logp


def surrogate(policy: ConvGaussianPolicy, params: Params, tb: TaskBatch, features: Tensor | None = None) -> Tensor:
    """J(params): importance-weighted advantage; maximise it."""
    ratio = torch.exp(policy_log_prob(policy, params, tb, features) - tb.logp_old)
    return (ratio * tb.advantages).mean()


def importance_weights(policy: ConvGaussianPolicy, params: Params, tb: TaskBatch) -> Tensor:
    return torch.exp(policy_log_prob(policy, params, tb) - tb.logp_old)


def adapt(
    policy: ConvGaussianPolicy,
    params: Params,
    step_sizes: Params,
    tb: TaskBatch,
    steps: int = 1,
    create_graph: bool = True,
    features: Tensor | None = None,
    natural_scale: float | None = None,
) -> Params:
    """``steps`` gradient-ascent steps on the surrogate: phi = theta + alpha * grad J.

    ``natural_scale``: each step is instead ``natural_output_step`` of that size (``step_sizes`` unused).

    ``create_graph=True`` keeps the graph for second-order meta-gradients; with
    False the step is first-order (the gradient is treated as a constant) but
    the outer loss still reaches theta and the step sizes. ``features`` may be
    passed in when the encoder is not adapted, to reuse one conv pass.
    """
    names = policy.adapted_names
    phi = dict(params)
    for _ in range(steps):
        feats = features if (features is not None and not policy.encoder_adapted) else None
        if natural_scale is not None:
            phi = natural_output_step(policy, phi, tb, natural_scale, features=feats, create_graph=create_graph)
            continue
        objective = surrogate(policy, phi, tb, feats)
        grads = torch.autograd.grad(objective, [phi[n] for n in names], create_graph=create_graph, retain_graph=True)
        phi = {**phi, **{n: phi[n] + step_sizes[n] * g for n, g in zip(names, grads)}}
    return phi


def adapt_detached(
    policy: ConvGaussianPolicy, params: Params, step_sizes: Params, tb: TaskBatch, steps: int = 1
) -> Params:
    """Adapt for acting only (meta-test, DAgger rollouts): no graph back to the meta-parameters."""
    leaf = {k: v.detach().requires_grad_(k in policy.adapted_names) for k, v in params.items()}
    alpha = {k: v.detach() for k, v in step_sizes.items()}
    phi = adapt(policy, leaf, alpha, tb, steps, create_graph=False)
    return {k: v.detach() for k, v in phi.items()}


def shrunk_step(
    policy: ConvGaussianPolicy, params: Params, step_sizes: Params, tb: TaskBatch, episodes: int
) -> tuple[Params, float]:
    """One meta-test step, shortened by the noise in its own estimate; returns (parameters, the factor kept).

    A policy-gradient step from a few sparse-reward episodes has the same length whether the rewards
    point somewhere or not (advantages are standardised per task). On door, targets the policy already
    hits got a full-length step in a direction set by exploration noise and were knocked out of the
    success band (benchmarks/adaptation.md). The step is the mean of one step per episode; its squared
    length overstates the true step's by the variance of that mean, tr(Cov)/episodes. Positive-part
    James-Stein shrinkage keeps the fraction max(0, 1 - tr(Cov) / (episodes |mean|^2)): about all of a
    step the episodes agree on, nothing of one that is mostly noise. Test time only, first order.
    """
    if len(tb.advantages) % episodes:
        raise ValueError(f"{len(tb.advantages)} steps do not split into {episodes} equal episodes")
    names = policy.adapted_names
    leaf = {k: v.detach().requires_grad_(k in names) for k, v in params.items()}
    alpha = {k: v.detach() for k, v in step_sizes.items()}
    with torch.no_grad():
        features = None if policy.encoder_adapted else policy.encode(tb.images, leaf)
    length = len(tb.advantages) // episodes
    per_episode: dict[str, list[Tensor]] = {n: [] for n in names}
    for e in range(episodes):
        rows = slice(e * length, (e + 1) * length)
        part = TaskBatch(tb.images[rows], tb.proprio[rows], tb.actions[rows], tb.advantages[rows], tb.logp_old[rows],
                         None if tb.offsets is None else tb.offsets[rows])
        grads = torch.autograd.grad(surrogate(policy, leaf, part, None if features is None else features[rows]),
                                    [leaf[n] for n in names])
        for n, g in zip(names, grads):
            per_episode[n].append(alpha[n] * g)
    steps = {n: torch.stack(s) for n, s in per_episode.items()}  # the full step is their mean (equal-length episodes)
    mean = {n: s.mean(0) for n, s in steps.items()}
    noise = sum(s.var(0).sum() for s in steps.values()) / episodes if episodes > 1 else torch.zeros(())
    length_sq = sum(m.pow(2).sum() for m in mean.values())
    kept = float(torch.clamp(1 - noise / length_sq.clamp_min(1e-30), min=0.0))
    return {k: (leaf[k] + kept * mean[k] if k in mean else v).detach() for k, v in leaf.items()}, kept


NATURAL_STEP_SCALE = 2.0  # adapt.natural_step_scale's default (chosen on door's and push's valid splits)


def natural_output_step(policy: ConvGaussianPolicy, params: Params, tb: TaskBatch, scale: float,
                        damping: float = 1e-3, features: Tensor | None = None, create_graph: bool = False) -> Params:
    """One natural policy-gradient step on the head's output layer; other parameters kept.

    For the Gaussian mean W h + b with fixed std, the Fisher of each action dimension's row is
    E[h h^T] / sigma^2 (h with a 1 appended) and its policy gradient E[h (a - mu) A] / sigma^2, so the
    natural gradient is the least-squares regression of the advantage-weighted exploration noise
    (a - mu) A on the features, in action units and free of sigma. Why not the plain gradient: on door the
    output layer can express every held-out target (fitted to expert actions it succeeds on 0.93 of
    valid targets against 0.23 before) yet the plain step from 40 rollouts loses success, while the
    layer's features are strongly correlated, which the Fisher undoes (benchmarks/adaptation.md).
    ``damping`` is added to E[h h^T]; ``scale`` multiplies the step (choose it on the valid split).

    Off the parameters that collected the batch (meta-training's outer steps reuse one batch) the
    advantages carry the importance weight, as in ``surrogate``; on fresh data the weights are exactly 1.
    ``create_graph=True`` keeps the step in the graph (meta-training through it, ``algo.inner_step=natural``):
    the meta-gradient then reaches the encoder and hidden layers through the features the regression uses.
    With False the step is a constant (meta-test; first-order meta-training).
    """
    if policy.has_episode_noise:
        raise ValueError("the natural output-layer step assumes per-step Gaussian exploration only; this policy also "
                         "explores per episode (policy.offset_log_std or policy.latent_log_std): use the gradient step")
    weight, bias = f"{policy.output_layer}.weight", f"{policy.output_layer}.bias"
    with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
        if features is None:
            features = policy.encode(tb.images, params)
        hidden = policy.head_hidden(features, tb.proprio, params)
        h = torch.cat([hidden, torch.ones_like(hidden[:, :1])], dim=1)
        mean = torch.nn.functional.linear(hidden, params[weight], params[bias])  # = head_mean without episode noise
        ratio = torch.exp(policy.log_prob(mean, params["log_std"], tb.actions) - tb.logp_old)
        moments = h.T @ h / len(h) + damping * torch.eye(h.shape[1], dtype=h.dtype, device=h.device)
        target = h.T @ ((tb.actions - mean) * (ratio * tb.advantages)[:, None]) / len(h)
        direction = torch.linalg.solve(moments, target)  # [H + 1, A]
    return {**params, weight: params[weight] + scale * direction[:-1].T, bias: params[bias] + scale * direction[-1]}
