"""Scripted experts solve their tasks (a small sample; benchmarks/expert_success.py runs the full table),
label arbitrary states (DAgger), and push demos replay exactly from their stored MuJoCo states."""

from __future__ import annotations

import numpy as np
import pytest

from demos.collect import collect_scripted, episode_seed, expert_kwargs, select_tasks
from demos.hdf5 import DemoReader, validate
from demos.replay import replay_demo
from demos.scripted import make_expert
from robot_envs import make_family


def _success_rate(family_name: str, split: str, n: int) -> tuple[float, list[str]]:
    family = make_family(family_name)
    expert = make_expert(family_name, **expert_kwargs(family))
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


@pytest.mark.parametrize("split,n", [("train", 6), ("test", 4)])
def test_push_expert_solves_a_sample_of_tasks(split, n):
    rate, failed = _success_rate("push", split, n)
    assert rate == 1.0, f"push expert failed on {failed}"


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
