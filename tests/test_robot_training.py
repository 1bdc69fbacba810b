"""GMPS end to end on the push family at a tiny image size: train (scripted expert + DAgger),
checkpoint, and adapt on held-out goals from that checkpoint, with the push distance reported.

Building a robosuite env takes ~2 s, so the run is as small as the plumbing allows.
"""

from __future__ import annotations

import pytest

import robot_envs.push  # noqa: F401  (picks the offscreen GL backend before anything imports mujoco)
from vision_gmps.adapt import adapt
from vision_gmps.checkpoint import CheckpointError, load_checkpoint
from vision_gmps.config import load_config
from vision_gmps.train import train

TINY_PUSH = [
    "+experiment=push_gmps",  # the real experiment config, shrunk below
    "wandb.mode=disabled",
    "env.tasks.train=2",
    "env.kwargs.horizon=10",
    "env.kwargs.image_size=[16,16]",
    "policy.conv_channels=[4,4]",
    "policy.conv_strides=[2,1]",
    "policy.hidden_sizes=[16]",
    "policy.adapt=[head.2,bias_transform]",  # the output layer, as the experiment's head.4 with two hidden layers
    "algo.pretrain_steps=2",
    "algo.rollouts_per_task=2",
    "algo.outer_steps=2",
    "algo.expert.episodes_per_task=1",
    "algo.dagger.rollouts_per_task=1",
    "train.iterations=1",
    "train.eval_every=0",
    "sampler.num_envs=2",
]


@pytest.fixture(scope="module")
def push_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("push_gmps")
    trainer = train(load_config([*TINY_PUSH, f"run_dir={run}"]))
    return trainer, run


def test_push_gmps_trains_checkpoints_and_adapts(push_run, tmp_path):
    trainer, run = push_run
    ckpt = run / "checkpoints" / "last.pt"
    assert ckpt.is_file()
    state = load_checkpoint(ckpt)
    assert state["env_args"]["family"] == "push" and state["iteration"] == 1
    assert trainer.buffer is not None and all(trainer.buffer.size(i) > 0 for i in range(2))
    assert trainer.env_episodes >= 2 * 2  # 2 tasks x 2 inner-loop rollouts at least

    results = adapt(load_config(["wandb.mode=disabled", f"adapt.checkpoint={ckpt}", "adapt.num_tasks=1",
                                 "adapt.steps=1", "adapt.rollouts_per_task=2", "adapt.step_size=both",
                                 "sampler.num_envs=2", f"run_dir={tmp_path / 'adapt'}"]))
    assert set(results) == {"learned", "fixed"}
    rows = results["learned"].rows
    assert [r["step"] for r in rows] == [0, 1]
    assert all(0.0 <= r["final_distance"] < 1.0 for r in rows)  # block-goal distance in metres
    assert "final_distance" in (tmp_path / "adapt" / "adapt_results.md").read_text()


def test_adapt_refuses_a_push_checkpoint_for_the_door_family(push_run, tmp_path):
    _, run = push_run
    argv = ["wandb.mode=disabled", f"adapt.checkpoint={run / 'checkpoints' / 'last.pt'}", "env=door",
            "adapt.num_tasks=1", "adapt.steps=1", "adapt.rollouts_per_task=2", "sampler.num_envs=2",
            f"run_dir={tmp_path / 'adapt'}"]
    with pytest.raises(CheckpointError, match="family: checkpoint push, settings door"):
        adapt(load_config(argv), overrides=argv)
