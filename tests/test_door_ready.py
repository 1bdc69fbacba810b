"""Door from the ready start: the hand starts at the handle, the expert opens to the target, and the main
job (record demos, train GMPS, adapt, report) runs on door at a tiny image size."""

from __future__ import annotations

import numpy as np
import pytest

import robot_envs.door  # noqa: F401  (picks the offscreen GL backend before anything imports mujoco)
from demos.scripted import expert_for
from robot_envs import make_family
from vision_gmps.config import load_config


def test_ready_start_puts_the_open_hand_over_the_handle_with_per_episode_offsets():
    family = make_family("door", start="ready", image_size=(16, 16), horizon=5)
    env = family.make_env(family.sample("test", 1, 0)[0])
    try:
        starts = []
        for seed in range(3):
            _, info = env.reset(seed=seed)
            state = info["state"]
            offset = state["eef_pos"] - (state["handle_pos"] + [0.0, 0.0, robot_envs.door.GRASP_HEIGHT])
            assert np.all(np.abs(offset[:2]) <= family.start_noise + 0.004) and abs(offset[2]) < 0.006
            assert state["hinge_angle"][0] == pytest.approx(0.0, abs=1e-6) and not info["success"]
            starts.append(state["eef_pos"])
        assert np.linalg.norm(starts[0] - starts[1]) > 1e-4  # start noise differs between episodes
    finally:
        env.close()
    with pytest.raises(ValueError, match="unknown door start 'handle'"):
        make_family("door", start="handle")


def test_door_expert_opens_to_the_target_from_the_ready_start():
    family = make_family("door", start="ready", image_size=(16, 16), horizon=60)
    expert = expert_for(family)
    env = family.make_env()
    errors = []
    try:
        for i, task in enumerate(family.sample("test", 3, 0) + family.sample("train", 2, 0)):
            env.task = task
            _, info = env.reset(seed=i)
            for _ in range(family.horizon):
                _, _, _, _, info = env.step(expert.act(info["state"]))
            errors.append(info["angle_error"])
    finally:
        env.close()
    assert max(errors) <= family.tolerance_deg, f"final angle errors (deg): {errors}"


def test_door_main_job_trains_adapts_and_writes_the_report(tmp_path):
    from vision_gmps.demo import run_demo

    cfg = load_config(["experiment=door_cpu", "wandb.mode=disabled", "env.tasks.train=2", "env.kwargs.horizon=6",
                       "env.kwargs.image_size=[16,16]", "policy.conv_channels=[4,4]", "policy.conv_strides=[2,1]",
                       "policy.hidden_sizes=[16]", "policy.adapt=[head.2,bias_transform]", "algo.pretrain_steps=2",
                       "algo.rollouts_per_task=2", "algo.outer_steps=2", "demo.demos_per_task=1", "sampler.num_envs=2",
                       "train.iterations=1", "train.eval_every=1", "train.eval_tasks=2", "train.eval_episodes=1",
                       "adapt.num_tasks=2", "adapt.steps=1", "adapt.rollouts_per_task=2", "adapt.eval_episodes=1",
                       "adapt.video.size=64", "adapt.video.sheet_tasks=2", f"run_dir={tmp_path}"], config_name="demo")
    assert cfg.env.family == "door" and cfg.env.kwargs.start == "ready"
    report = run_demo(cfg).read_text()
    assert "# GMPS on door" in report and "| reward-shuffled control | 1 |" in report
    assert "| adaptation (natural-gradient steps on the output layer) | 1 |" in report  # door_cpu's meta-test step
    assert "final_angle_error" in report
    assert (tmp_path / "adapt" / "task0_before_after.mp4").stat().st_size > 0
    assert (tmp_path / "adapt" / "after_adaptation_sheet.png").stat().st_size > 0


def test_closed_gripper_holds_the_handle_with_a_3d_action_and_the_expert_still_opens_to_the_target():
    family = make_family("door", start="ready", gripper="closed", image_size=(16, 16), horizon=60)
    expert = expert_for(family)
    env = family.make_env(family.sample("test", 1, 0)[0])
    try:
        assert env.action_space.shape == (3,)
        _, info = env.reset(seed=0)
        for _ in range(family.horizon):
            action = expert.act(info["state"])
            assert action.shape == (3,)
            _, _, _, _, info = env.step(action)
        assert info["angle_error"] <= family.tolerance_deg
        fingers = float(np.abs(info["state"]["gripper_qpos"]).sum())
        assert 0.012 < fingers < 0.06, f"fingers not closed on the 3 cm bar: gap {fingers:.3f} m"
    finally:
        env.close()
    with pytest.raises(ValueError, match="unknown door gripper mode 'open'"):
        make_family("door", start="ready", gripper="open")
    with pytest.raises(ValueError, match="needs start='ready'"):
        make_family("door", start="home", gripper="closed")
