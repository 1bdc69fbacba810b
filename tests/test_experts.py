"""Scripted experts solve their tasks (a small sample; benchmarks/expert_success.py runs the full table),
label arbitrary states (DAgger), and push demos replay exactly from their stored MuJoCo states."""

from __future__ import annotations

import numpy as np
import pytest

from demos.collect import collect_scripted, episode_seed, select_tasks
from demos.hdf5 import DemoReader, validate
from demos.replay import replay_demo
from demos.scripted import make_expert
from robot_envs import make_family


def _success_rate(family_name: str, split: str, n: int, **expert_options) -> tuple[float, list[str]]:
    family = make_family(family_name)
    expert = make_expert(family_name, **family.expert_kwargs(), **expert_options)
    tasks = family.sample(split, n, 0)
    env = family.make_env(tasks[0])
    failed = []
    try:
        for task in tasks:
            env.task = task
            _, info = env.reset(seed=episode_seed(0, task, 0))
            done = False
            while not done:
                _, _, terminated, truncated, info = env.step(expert.act(info["state"]))
                done = terminated or truncated
            if not info["success"]:
                failed.append(task.task_id)
    finally:
        env.close()
    return 1.0 - len(failed) / n, failed


def test_point_expert_solves_every_task():
    for split in ("train", "test"):
        rate, failed = _success_rate("point", split, 30)
        assert rate == 1.0, failed


@pytest.mark.parametrize("strategy", ["straight", "axis"])
def test_push_expert_solves_most_of_a_sample_of_tasks(strategy):
    # benchmarks/expert_success.py: straight ~96%, axis ~80% over 50 episodes; a broken expert scores ~0%.
    rates = [_success_rate("push", split, 5, strategy=strategy) for split in ("train", "test")]
    failed = [task for _, f in rates for task in f]
    assert len(failed) <= 2, f"push expert ({strategy}) failed on {failed}"


@pytest.mark.parametrize("split,n", [("train", 3), ("test", 3)])
def test_door_expert_solves_a_sample_of_tasks(split, n):
    rate, failed = _success_rate("door", split, n)
    assert rate == 1.0, f"door expert failed on {failed}"


def test_door_expert_labels_arbitrary_states_in_range():
    """DAgger relabelling: any hand position, door angle and grip gets a finite action in [-1, 1]."""
    expert = make_expert("door")
    rng = np.random.default_rng(0)
    n = 64
    angle = rng.uniform(0.0, np.pi / 2, n)
    hinge = np.tile([-0.305, -0.55, 1.1], (n, 1))
    arm = np.c_[0.43 * np.cos(angle) - 0.15 * np.sin(angle), 0.43 * np.sin(angle) + 0.15 * np.cos(angle)]
    states = {
        "eef_pos": np.c_[rng.uniform(-0.45, 0.3, (n, 2)), rng.uniform(0.85, 1.4, n)],
        "gripper_qpos": np.c_[rng.uniform(0.0, 0.04, n), -rng.uniform(0.0, 0.04, n)],
        "handle_pos": np.c_[hinge[:, :2] + arm, np.full(n, 1.075)],
        "hinge_pos": hinge,
        "hinge_angle": angle[:, None],
        "target_angle": rng.uniform(np.deg2rad(15), np.deg2rad(60), (n, 1)),
    }
    actions = expert.act_batch(states)
    assert actions.shape == (n, 4) and actions.dtype == np.float32
    assert np.all(np.isfinite(actions)) and np.abs(actions).max() <= 1.0
    # Holding the handle at the target angle: the gripper stays closed and the hand stays put.
    done = {k: v[0].copy() for k, v in states.items()}
    done["target_angle"] = done["hinge_angle"].copy()
    done["eef_pos"] = done["handle_pos"] + [0.0, 0.0, 0.05]
    done["gripper_qpos"] = np.array([0.015, -0.015])
    action = expert.act(done)
    assert action[3] == 1.0
    np.testing.assert_allclose(action[:3], 0.0, atol=1e-6)


def test_push_expert_labels_arbitrary_states_in_range():
    """DAgger relabelling: any state (block anywhere, hand anywhere) gets a finite action in [-1, 1]."""
    expert = make_expert("push")
    rng = np.random.default_rng(0)
    states = {
        "eef_pos": np.c_[rng.uniform(-0.3, 0.3, (64, 2)), rng.uniform(0.81, 1.1, 64)],
        "block_pos": np.c_[rng.uniform(-0.2, 0.2, (64, 2)), np.full(64, 0.825)],
        "goal": np.c_[rng.uniform(-0.2, 0.2, (64, 2)), np.full(64, 0.8)],
        "block_half_size": np.full((64, 1), 0.025),
    }
    actions = expert.act_batch(states)
    assert actions.shape == (64, 3) and actions.dtype == np.float32
    assert np.all(np.isfinite(actions)) and np.abs(actions).max() <= 1.0
    # The block already on the goal: the expert holds still horizontally.
    done = {k: v[0] for k, v in states.items()}
    done["goal"] = np.r_[done["block_pos"][:2], 0.8]
    np.testing.assert_allclose(expert.act(done)[:2], 0.0)


def test_push_demos_replay_exactly_from_states(tmp_path):
    family = make_family("push")
    path = tmp_path / "push.hdf5"
    stats = collect_scripted(family, select_tasks(family, "test", 1, 0), 1, path, progress=False)
    assert stats.successes == 1
    assert validate(path) == []
    with DemoReader(path) as reader:
        assert "<mujoco" in reader.episode("demo_0").model_xml
        assert reader.env_args["obs_keys"]["image"] == "agentview_image"
    result, _ = replay_demo(path, "demo_0", "both")
    assert result.mismatched_frames == 0
    assert result.max_state_divergence is not None and result.replayed_success
