"""Per-episode latent exploration at the head's input (MAESN): latents constant within an episode and
read by the head, and BC pre-training that gives each training task its own latent so that sampled
latents spread the policy's behaviour. The exact meta-gradient and the latent's score in the inner step
are checked beside the action offset's, in tests/test_offset_exploration.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_envs.point import PointFamily
from tests.test_training import EXPERT, TINY
from vision_gmps.config import load_config
from vision_gmps.meta import bc_loss
from vision_gmps.policy import ConvGaussianPolicy, PolicySpec
from vision_gmps.rollouts import PolicyActor, Sampler
from vision_gmps.trainer import MetaTrainer


def test_offset_and_latent_together_are_refused():
    spec = PolicySpec(image_shape=(8, 8, 3), proprio_dim=2, action_dim=2, offset_log_std=-1.0, latent_log_std=-1.0)
    with pytest.raises(ValueError, match="offset_log_std and policy.latent_log_std are both set"):
        ConvGaussianPolicy(spec)


def test_sampled_latents_are_constant_per_episode_read_by_the_head_and_absent_when_deterministic():
    family = PointFamily(image_size=(16, 16), horizon=5)
    torch.manual_seed(0)
    spec = PolicySpec(image_shape=(16, 16, 3), proprio_dim=2, action_dim=2, conv_channels=(4,), conv_strides=(2,),
                      hidden_sizes=(16,), bias_transform_dim=3, init_log_std=-4.0, latent_log_std=np.log(0.5))
    policy = ConvGaussianPolicy(spec)
    with torch.no_grad():
        policy.head[-1].weight.normal_(0, 1.0)
    sampler = Sampler(family, num_envs=3)
    try:
        tasks = family.sample("train", 2, seed=0)
        params = [policy.params()] * 2
        batch = sampler.collect(tasks, 4, PolicyActor(policy, params, seed=0), seed=0)
        assert batch.offsets.shape == (8, 3)  # bias_transform_dim, not the action's width
        assert np.unique(batch.offsets.round(6), axis=0).shape[0] == 8  # one draw per episode
        assert batch.offsets.std() == pytest.approx(0.5, rel=0.5)
        # the first actions of episodes on one task differ by far more than the per-step noise (std 0.018)
        first = batch.actions[:4, 0]
        assert first.std(0).max() > 0.05, first
        greedy = sampler.collect(tasks, 1, PolicyActor(policy, params, deterministic=True), seed=0)
        assert greedy.offsets is None
    finally:
        sampler.close()


def test_bc_pretraining_gives_each_task_its_own_latent_and_fits_the_exploration_to_them(tmp_path):
    cfg = load_config(["algo=gmps", *TINY, *EXPERT, f"run_dir={tmp_path}", "policy.latent_log_std=0.0",
                       "algo.pretrain_steps=100", "algo.outer_lr=3e-3", "env.tasks.train=4", "algo.expert_batch_size=32",
                       "algo.expert.episodes_per_task=3"])
    trainer = MetaTrainer(cfg, tmp_path)
    try:
        trainer.init_expert_data()
        metrics = trainer.pretrain()
    finally:
        trainer.sampler.close()
    policy, latents = trainer.policy, trainer.bc_task_latents
    assert latents.shape == (4, cfg.policy.bias_transform_dim)
    torch.testing.assert_close(policy.bias_transform.detach(), latents.mean(0))
    torch.testing.assert_close(policy.latent_log_std.detach().exp(), latents.std(0))
    # the head reads the latent: each task's expert is imitated better with its own latent than with the mean
    rng = np.random.default_rng(0)
    params = policy.params()
    with torch.no_grad():
        own, shared = [], []
        for i in range(4):
            batch = trainer._expert_batches([i], rng)
            own.append(bc_loss(policy, params, batch, "mse", latents[i : i + 1]).item())
            shared.append(bc_loss(policy, params, batch, "mse").item())
    assert np.mean(own) < 0.8 * np.mean(shared), (own, shared)
    # the warm-start check measures the pre-update policy where it acts: at the shared latent
    assert metrics["pretrain/bc_loss"] > metrics["pretrain/bc_loss_own_latents"]
    assert trainer.bc_loss_after_pretrain == metrics["pretrain/bc_loss"]
