"""The meta-gradient through the inner step is the exact derivative of the meta-objective."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import synthetic_expert_batch, synthetic_task_batch, tiny_policy
from vision_gmps.inner import TaskBatch, adapt, importance_weights, policy_log_prob, surrogate
from vision_gmps.meta import batch_pixels, gmps_loss, maml_loss
from vision_gmps.policy import StepSizes


def _setup(seed: int = 0):
    policy = tiny_policy(seed=seed)
    step_sizes = StepSizes(policy, init=0.5).double()
    tasks = [synthetic_task_batch(policy, seed=s) for s in (0, 1)]
    experts = [synthetic_expert_batch(policy, seed=s) for s in (2, 3)]
    return policy, step_sizes, tasks, experts


def _shift(leaves: list[torch.Tensor], direction: list[torch.Tensor], scale: float) -> None:
    with torch.no_grad():
        for p, d in zip(leaves, direction):
            p.add_(scale * d)


def _directional_fd(fn, leaves: list[torch.Tensor], direction: list[torch.Tensor], eps: float = 1e-6) -> float:
    # The objective itself takes gradients (the inner step), so it runs with autograd on.
    _shift(leaves, direction, eps)
    plus = fn().item()
    _shift(leaves, direction, -2 * eps)
    minus = fn().item()
    _shift(leaves, direction, eps)
    return (plus - minus) / (2 * eps)


def _analytic_and_fd(objective, policy, step_sizes, seed=0):
    leaves = list(policy.parameters()) + list(step_sizes.parameters())
    g = torch.Generator().manual_seed(seed)
    direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in leaves]
    grads = torch.autograd.grad(objective(True), leaves)
    analytic = sum((gr * d).sum() for gr, d in zip(grads, direction)).item()
    fd = _directional_fd(lambda: objective(True), leaves, direction)
    return analytic, fd, grads


def test_gmps_meta_gradient_matches_finite_differences():
    policy, step_sizes, tasks, experts = _setup()

    def objective(second_order: bool):
        return gmps_loss(policy, policy.params(), step_sizes.as_dict(), tasks, experts, create_graph=second_order)

    analytic, fd, _ = _analytic_and_fd(objective, policy, step_sizes)
    assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9)

    # The check has teeth: the first-order approximation drops the curvature term and misses.
    leaves = list(policy.parameters()) + list(step_sizes.parameters())
    g = torch.Generator().manual_seed(0)
    direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in leaves]
    # log_std only reaches the MSE outer loss through the inner gradient, so it is unused here.
    first_order = torch.autograd.grad(objective(False), leaves, allow_unused=True)
    fo = sum((gr * d).sum() for gr, d in zip(first_order, direction) if gr is not None).item()
    assert abs(fo - fd) > 1e-4 * max(1.0, abs(fd))


def test_gmps_meta_gradient_per_coordinate():
    """Central differences on individual entries of a conv weight, a head weight and a step size."""
    policy, step_sizes, tasks, experts = _setup(seed=1)
    loss = lambda: gmps_loss(policy, policy.params(), step_sizes.as_dict(), tasks, experts)  # noqa: E731
    probes = [(policy.encoder[0].weight, (0, 1, 1, 1)), (policy.head[0].weight, (2, 3)), (step_sizes.values[1], (2, 3))]
    grads = torch.autograd.grad(loss(), [p for p, _ in probes])
    for (param, index), grad in zip(probes, grads):
        eps = 1e-6
        with torch.no_grad():
            param[index] += eps
        plus = loss().item()
        with torch.no_grad():
            param[index] -= 2 * eps
        minus = loss().item()
        with torch.no_grad():
            param[index] += eps
        assert grad[index].item() == pytest.approx((plus - minus) / (2 * eps), rel=1e-5, abs=1e-9)


def test_maml_meta_gradient_matches_finite_differences():
    policy, step_sizes, tasks, _ = _setup(seed=2)
    post = [synthetic_task_batch(policy, seed=s) for s in (5, 6)]

    def objective(second_order: bool):
        # clip large enough not to bind: the clipped objective is not differentiable at the kink.
        return maml_loss(policy, policy.params(), step_sizes.as_dict(), tasks, post, create_graph=second_order, clip=10.0)

    analytic, fd, _ = _analytic_and_fd(objective, policy, step_sizes, seed=3)
    assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_importance_weights_are_one_on_fresh_data():
    policy, _, tasks, _ = _setup()
    for tb in tasks:
        assert torch.equal(importance_weights(policy, policy.params(), tb), torch.ones(len(tb.actions), dtype=torch.float64))


def test_one_inner_step_raises_the_surrogate():
    policy, _, tasks, _ = _setup()
    step_sizes = StepSizes(policy, init=0.01).double()
    for tb in tasks:
        before = surrogate(policy, policy.params(), tb).item()
        phi = adapt(policy, policy.params(), step_sizes.as_dict(), tb, steps=1, create_graph=False)
        after = surrogate(policy, phi, tb).item()
        assert after > before + 1e-6


def test_step_sizes_receive_gradient_and_only_adapted_parameters_move():
    policy, step_sizes, tasks, experts = _setup()
    gmps_loss(policy, policy.params(), step_sizes.as_dict(), tasks, experts).backward()
    for name, value in zip(step_sizes.names, step_sizes.values):
        assert value.grad is not None and value.grad.abs().sum() > 0, name
    phi = adapt(policy, policy.params(), step_sizes.as_dict(), tasks[0], create_graph=False)
    for name, param in policy.named_parameters():
        moved = not torch.equal(phi[name], param)
        assert moved == (name in policy.adapted_names), name
    assert set(policy.adapted_names) == {"bias_transform", "head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"}


def test_pixels_converted_once_give_the_same_losses_and_gradients():
    """The trainer converts a batch's images once for all outer steps: bit-for-bit the per-call conversion."""
    policy, step_sizes, tasks, experts = _setup(seed=4)
    post = [synthetic_task_batch(policy, seed=s) for s in (7, 8)]
    leaves = list(policy.parameters()) + list(step_sizes.parameters())
    pre_pixels, post_pixels = batch_pixels(policy, tasks), batch_pixels(policy, post)
    cases = [
        (lambda: gmps_loss(policy, policy.params(), step_sizes.as_dict(), tasks, experts),
         lambda: gmps_loss(policy, policy.params(), step_sizes.as_dict(), tasks, experts, pre_pixels=pre_pixels)),
        (lambda: maml_loss(policy, policy.params(), step_sizes.as_dict(), tasks, post),
         lambda: maml_loss(policy, policy.params(), step_sizes.as_dict(), tasks, post,
                           pre_pixels=pre_pixels, post_pixels=post_pixels)),
    ]
    for per_call, converted_once in cases:
        a, b = per_call(), converted_once()
        assert torch.equal(a, b)
        for ga, gb in zip(torch.autograd.grad(a, leaves, allow_unused=True),
                          torch.autograd.grad(b, leaves, allow_unused=True)):
            assert (ga is None and gb is None) or torch.equal(ga, gb)
    with pytest.raises(ValueError, match="batch_pixels"):
        gmps_loss(policy, policy.params(), step_sizes.as_dict(), tasks, experts, pre_pixels=post_pixels[:-1])


def test_encoding_in_chunks_gives_the_same_keypoints_and_meta_gradient(monkeypatch):
    """Big batches are encoded in chunks (policy.ENCODE_CHUNK, for cache locality): nothing else may change."""
    import vision_gmps.policy as policy_module

    policy, step_sizes, tasks, experts = _setup(seed=5)
    leaves = list(policy.parameters()) + list(step_sizes.parameters())
    images = torch.cat([tb.images for tb in tasks])

    def run():
        loss = gmps_loss(policy, policy.params(), step_sizes.as_dict(), tasks, experts)
        return policy.encode(images, policy.params()), loss, torch.autograd.grad(loss, leaves, allow_unused=True)

    monkeypatch.setattr(policy_module, "ENCODE_CHUNK", 0)
    keypoints, loss, grads = run()
    monkeypatch.setattr(policy_module, "ENCODE_CHUNK", 5)  # 24 rollout images: chunks of 5, 5, 5, 5, 4
    chunked_keypoints, chunked_loss, chunked_grads = run()
    assert len(images) == 24
    torch.testing.assert_close(chunked_keypoints, keypoints, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(chunked_loss, loss, rtol=1e-12, atol=0)
    for whole, chunked in zip(grads, chunked_grads):
        assert (whole is None) == (chunked is None)
        if whole is not None:
            torch.testing.assert_close(chunked, whole, rtol=1e-10, atol=1e-12)


def test_shrunk_step_is_the_full_step_scaled_keeps_agreement_and_drops_noise():
    """inner.shrunk_step (adapt.shrink_steps): kept x the ordinary step; all of it when every episode agrees, little of noise."""
    from vision_gmps.inner import TaskBatch, adapt_detached, shrunk_step

    policy = tiny_policy(seed=6)
    step_sizes = StepSizes(policy, init=0.5).double().as_dict()
    start = policy.params()
    noisy = synthetic_task_batch(policy, n=40, seed=1)  # 10 episodes of 4 steps, advantages unrelated to actions
    full = adapt_detached(policy, start, step_sizes, noisy)
    shrunk, kept = shrunk_step(policy, start, step_sizes, noisy, episodes=10)
    for name in policy.adapted_names:
        torch.testing.assert_close(shrunk[name] - start[name], kept * (full[name] - start[name]))
    assert kept < 0.3, kept
    one = slice(0, 4)  # every episode the same: the episodes' steps agree exactly
    same = TaskBatch(*(x[one].repeat(10, *[1] * (x.dim() - 1)) for x in
                       (noisy.images, noisy.proprio, noisy.actions, noisy.advantages, noisy.logp_old)))
    _, kept_same = shrunk_step(policy, start, step_sizes, same, episodes=10)
    assert kept_same == pytest.approx(1.0)
    with pytest.raises(ValueError, match="equal episodes"):
        shrunk_step(policy, start, step_sizes, noisy, episodes=7)


def test_natural_output_step_is_the_inverse_fisher_times_the_policy_gradient():
    """inner.natural_output_step against F^-1 g, with F = E[J^T Sigma^-1 J] from autograd Jacobians of the mean."""
    from torch.func import jacrev

    from vision_gmps.inner import natural_output_step

    policy = tiny_policy(seed=3)
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([-0.5, 0.3], dtype=torch.float64))  # unequal stds: F differs per action dim
    tb = synthetic_task_batch(policy, n=40, seed=2)
    start = policy.params()
    layer = policy.output_layer
    weight, bias = start[f"{layer}.weight"], start[f"{layer}.bias"]

    def mean_of(w, b):
        return policy.mean(tb.images, tb.proprio, {**start, f"{layer}.weight": w, f"{layer}.bias": b})

    jw, jb = jacrev(mean_of, argnums=(0, 1))(weight, bias)  # [n, A, A, H], [n, A, A]
    jac = torch.cat([jw.flatten(2), jb], dim=2)  # [n, A, P]
    inv_var = torch.exp(-2 * start["log_std"])
    fisher = torch.einsum("nap,a,naq->pq", jac, inv_var, jac) / len(jac)
    leaf = {k: v.detach().requires_grad_(k in (f"{layer}.weight", f"{layer}.bias")) for k, v in start.items()}
    gw, gb = torch.autograd.grad(surrogate(policy, leaf, tb), [leaf[f"{layer}.weight"], leaf[f"{layer}.bias"]])
    expected = torch.linalg.solve(fisher, torch.cat([gw.flatten(), gb]))

    stepped = natural_output_step(policy, start, tb, scale=0.7, damping=0.0)
    got = torch.cat([(stepped[f"{layer}.weight"] - weight).flatten(), stepped[f"{layer}.bias"] - bias])
    torch.testing.assert_close(got, 0.7 * expected)
    assert all(torch.equal(stepped[k], v) for k, v in start.items() if not k.startswith(layer + "."))
    with pytest.raises(ValueError, match="per episode"):
        natural_output_step(tiny_policy(offset_log_std=-1.0), tiny_policy(offset_log_std=-1.0).params(), tb, 1.0)


def test_gmps_meta_gradient_through_the_natural_step_matches_finite_differences():
    """algo.inner_step=natural: the outer loss reaches the encoder and hidden layers through the step's regression."""
    policy = tiny_policy(seed=4)
    step_sizes = StepSizes(policy, init=0.5).double()
    tasks = [synthetic_task_batch(policy, n=40, seed=s) for s in (7, 8)]
    experts = [synthetic_expert_batch(policy, seed=s) for s in (9, 10)]
    leaves = list(policy.parameters())
    g = torch.Generator().manual_seed(5)
    direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in leaves]

    def objective(second_order: bool):
        return gmps_loss(policy, policy.params(), step_sizes.as_dict(), tasks, experts, create_graph=second_order,
                         natural_scale=0.7)

    grads = torch.autograd.grad(objective(True), leaves, allow_unused=True)
    analytic = sum((gr * d).sum() for gr, d in zip(grads, direction) if gr is not None).item()
    fd = _directional_fd(lambda: objective(True), leaves, direction)
    assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9)
    assert grads[0] is not None and grads[0].abs().sum() > 0  # the first conv layer is shaped by the step
    # teeth: treating the step as a constant (first order) misses the derivative
    first = torch.autograd.grad(objective(False), leaves, allow_unused=True)
    fo = sum((gr * d).sum() for gr, d in zip(first, direction) if gr is not None).item()
    assert abs(fo - fd) > 1e-4 * max(1.0, abs(fd))


def test_natural_step_in_the_graph_is_the_meta_test_step_on_fresh_data():
    """What meta-training differentiates is the step meta-test takes: same parameters at the collecting policy."""
    from vision_gmps.inner import natural_output_step

    policy = tiny_policy(seed=5)
    tb = synthetic_task_batch(policy, n=40, seed=3)
    in_graph = natural_output_step(policy, policy.params(), tb, scale=2.0, create_graph=True)
    assert in_graph[f"{policy.output_layer}.weight"].requires_grad
    with torch.no_grad():
        detached = natural_output_step(policy, {k: v.detach() for k, v in policy.params().items()}, tb, scale=2.0)
    for name, value in detached.items():
        torch.testing.assert_close(in_graph[name].detach(), value, rtol=0, atol=0)
    # off the collecting parameters the advantages carry the importance weight (as the surrogate's gradient does)
    moved = {k: v.detach() + (0.05 if k == "log_std" else 0.0) for k, v in policy.params().items()}
    stepped = natural_output_step(policy, moved, tb, scale=2.0)
    unweighted = TaskBatch(tb.images, tb.proprio, tb.actions, tb.advantages, policy_log_prob(policy, moved, tb))
    assert not torch.allclose(stepped[f"{policy.output_layer}.bias"],
                              natural_output_step(policy, moved, unweighted, scale=2.0)[f"{policy.output_layer}.bias"])
