"""The point family: seeded disjoint splits, hidden goal, sparse reward, exact expert."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from demos.scripted import make_expert
from robot_envs import make_family


@pytest.fixture()
def family():
    return make_family("point")


def test_splits_are_seeded_stable_and_disjoint(family):
    train = family.sample("train", 20, seed=0)
    assert train == family.sample("train", 20, seed=0)
    assert family.sample("train", 5, seed=0) == train[:5]  # asking for more keeps the first ones
    assert train != family.sample("train", 20, seed=1)
    test = family.sample("test", 10, seed=0)
    train_goals = {tuple(t.params.values()) for t in train}
    assert not any(tuple(t.params.values()) in train_goals for t in test)
    assert [t.task_id for t in test[:2]] == ["point/test/0", "point/test/1"]


def test_goal_is_not_visible_in_the_image(family):
    a, b = family.sample("train", 2)
    env_a, env_b = family.make_env(a), family.make_env(b)
    obs_a, _ = env_a.reset(seed=3)
    obs_b, _ = env_b.reset(seed=3)
    np.testing.assert_array_equal(obs_a["image"], obs_b["image"])
    for action in ([1.0, 0.5], [-0.3, 1.0]):
        obs_a, *_ = env_a.step(np.array(action))
        obs_b, *_ = env_b.step(np.array(action))
        np.testing.assert_array_equal(obs_a["image"], obs_b["image"])
    # ... while the image does show where the point is.
    env_b.set_state(np.array([0.5, 0.5]))
    assert not np.array_equal(env_a.render(), env_b.render())


def test_sparse_reward_and_success(family):
    task = family.sample("train", 1)[0]
    env = family.make_env(task)
    env.reset(seed=0)
    goal = np.array([task.params["goal_x"], task.params["goal_y"]])
    env.set_state(goal - np.array([0.05, 0.0]))
    _, reward, terminated, _, info = env.step(np.zeros(2))
    assert reward == 1.0 and info["success"] and not terminated
    env.set_state(-goal)
    _, reward, _, _, info = env.step(np.zeros(2))
    assert reward == 0.0 and not info["success"] and info["dense_reward"] < -1.0


def test_env_checker_and_fixed_horizon(family):
    env = family.make_env(family.sample("train", 1)[0])
    check_env(env, skip_render_check=True)
    env.reset(seed=0)
    truncated = [env.step(env.action_space.sample())[3] for _ in range(family.horizon)]
    assert truncated == [False] * (family.horizon - 1) + [True]


def test_scripted_expert_solves_every_task(family):
    expert = make_expert("point", max_step=family.max_step)
    for task in family.sample("train", 5) + family.sample("test", 5):
        env = family.make_env(task)
        _, info = env.reset(seed=task.index)
        for _ in range(family.horizon):
            _, _, _, _, info = env.step(expert.act(info["state"]))
        assert info["success"], task


def test_bad_inputs_get_clear_errors(family):
    with pytest.raises(ValueError, match="unknown task family 'pointt'.*available"):
        make_family("pointt")
    with pytest.raises(ValueError, match="bad options for task family 'point'"):
        make_family("point", goal_radiuss=0.1)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        family.sample("val", 3)
    env = family.make_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(2,\)"):
        env.step(np.zeros(3))
