"""The robosuite families (push, door): API contract, determinism, hidden goals, rewards, bad input, vector envs.

Building a robosuite env takes ~2 s, so envs are module-scoped and episodes short.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from robot_envs import make_family
from robot_envs.door import DoorFamily
from robot_envs.push import PushFamily
from robot_envs.vector import make_vector_env

gym = pytest.importorskip("gymnasium")


@pytest.fixture(scope="module")
def push_family() -> PushFamily:
    return PushFamily(horizon=6)


@pytest.fixture(scope="module")
def push_env(push_family):
    env = push_family.make_env()
    yield env
    env.close()


@pytest.fixture(scope="module")
def door_family() -> DoorFamily:
    return DoorFamily(horizon=6)


@pytest.fixture(scope="module")
def door_env(door_family):
    env = door_family.make_env()
    yield env
    env.close()


def _rollout(env, seed: int, actions: np.ndarray):
    obs, _ = env.reset(seed=seed)
    images, proprios, rewards, dense = [obs["image"]], [obs["proprio"]], [], []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        images.append(obs["image"])
        proprios.append(obs["proprio"])
        rewards.append(reward)
        dense.append(info["dense_reward"])
    return np.stack(images), np.stack(proprios), np.array(rewards), np.array(dense)


@pytest.mark.parametrize("name", ["push", "door"])
def test_check_env_passes(name, request):
    from gymnasium.utils.env_checker import check_env

    env = request.getfixturevalue(f"{name}_env")
    check_env(env, skip_render_check=True, skip_close_check=True)


@pytest.mark.parametrize("name", ["push", "door"])
def test_observation_and_info_contract(name, request):
    env = request.getfixturevalue(f"{name}_env")
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["image"].std() > 5, "camera image is blank"
    assert obs["proprio"].dtype == np.float32 and obs["proprio"].shape == (5,)
    np.testing.assert_allclose(obs["proprio"][:3], info["state"]["eef_pos"], atol=1e-6)
    assert set(info) >= {"success", "dense_reward", "state"}
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in info["state"].values())
    steps = 0
    truncated = False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.zeros(env.action_space.shape, np.float32))
        assert not terminated
        steps += 1
    assert steps == env.horizon


def test_push_state_keys(push_env):
    _, info = push_env.reset(seed=0)
    assert set(info["state"]) >= {"eef_pos", "eef_quat", "gripper_qpos", "block_pos", "block_quat", "goal"}
    np.testing.assert_allclose(info["state"]["goal"][:2], push_env.goal)
    assert info["distance"] == pytest.approx(np.linalg.norm(info["state"]["block_pos"][:2] - push_env.goal))


def test_door_state_keys(door_env):
    _, info = door_env.reset(seed=0)
    assert set(info["state"]) >= {"eef_pos", "gripper_qpos", "handle_pos", "hinge_angle", "target_angle", "hinge_pos"}
    assert info["state"]["hinge_angle"][0] == pytest.approx(0.0, abs=1e-6)
    assert info["angle_error"] == pytest.approx(np.rad2deg(door_env.target_angle), abs=1e-4)


@pytest.mark.parametrize("name", ["push", "door"])
def test_same_seed_same_observations_and_rewards(name, request):
    env = request.getfixturevalue(f"{name}_env")
    actions = np.random.default_rng(1).uniform(-1, 1, (4, *env.action_space.shape)).astype(np.float32)
    first = _rollout(env, 7, actions)
    second = _rollout(env, 7, actions)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0][0], first[0][-1]), "the arm did not move in the image"


def test_push_starts_with_the_hand_low_behind_the_block(push_env):
    _, info = push_env.reset(seed=0)
    eef, block = info["state"]["eef_pos"], info["state"]["block_pos"]
    behind = block[0] - eef[0]
    assert 0.05 < behind < 0.08 and abs(eef[1] - block[1]) < 0.02, (eef, block)
    assert eef[2] - block[2] < 0.03  # level with the block, ready to push


def test_push_home_start_and_bad_start_name():
    env = PushFamily(horizon=2, start="home").make_env()
    try:
        _, info = env.reset(seed=0)
        assert info["state"]["eef_pos"][2] - info["state"]["block_pos"][2] > 0.1  # robosuite's pose, high above
    finally:
        env.close()
    with pytest.raises(ValueError, match="unknown push start 'behind'"):
        PushFamily(start="behind")


def test_push_seed_changes_block_start(push_env):
    _, info_a = push_env.reset(seed=1)
    _, info_b = push_env.reset(seed=2)
    assert not np.allclose(info_a["state"]["block_pos"], info_b["state"]["block_pos"])


@pytest.mark.parametrize("name", ["push", "door"])
def test_goal_is_not_rendered(name, request):
    env = request.getfixturevalue(f"{name}_env")
    family = request.getfixturevalue(f"{name}_family")
    task_a, task_b = family.sample("train", 2, seed=0)
    assert task_a.params != task_b.params
    env.task = task_a
    obs_a, info_a = env.reset(seed=3)
    env.task = task_b
    obs_b, info_b = env.reset(seed=3)
    np.testing.assert_array_equal(obs_a["image"], obs_b["image"])
    np.testing.assert_array_equal(obs_a["proprio"], obs_b["proprio"])
    assert info_a["dense_reward"] != info_b["dense_reward"]
    # the debug view does draw the goal, so the test above can fail
    env.show_goal = True
    try:
        assert not np.array_equal(env.render(), obs_b["image"])
    finally:
        env.show_goal = False


def test_push_block_on_goal_gives_success_and_reward(push_env, push_family):
    push_env.task = push_family.sample("test", 1, seed=0)[0]
    push_env.reset(seed=0)
    _, info = push_env.place_block(push_env.goal + [0.02, 0.0])
    assert info["success"] and info["distance"] == pytest.approx(0.02, abs=1e-3)
    _, reward, _, _, info = push_env.step(np.zeros(3, np.float32))
    assert info["success"] and reward == 1.0
    _, info = push_env.place_block(push_env.goal + [0.0, 0.2])
    assert not info["success"]
    _, reward, _, _, info = push_env.step(np.zeros(3, np.float32))
    assert not info["success"] and reward == 0.0


def test_door_at_target_angle_gives_success(door_env, door_family):
    door_env.task = door_family.sample("test", 1, seed=0)[0]
    door_env.reset(seed=0)
    target = door_env.target_angle
    _, info = door_env.set_hinge_angle(target + np.deg2rad(3))
    assert info["success"]
    _, reward, _, _, info = door_env.step(np.zeros(4, np.float32))
    assert info["success"] and reward == 1.0
    _, info = door_env.set_hinge_angle(target + np.deg2rad(15))
    _, reward, _, _, info = door_env.step(np.zeros(4, np.float32))
    assert not info["success"] and reward == 0.0


@pytest.mark.parametrize("name", ["push", "door"])
def test_sim_state_round_trip_replays_exactly(name, request):
    env = request.getfixturevalue(f"{name}_env")
    actions = np.random.default_rng(2).uniform(-1, 1, (3, *env.action_space.shape)).astype(np.float32)
    env.reset(seed=5)
    env.step(actions[0])
    state = env.get_sim_state()
    first = [env.step(a)[0]["image"] for a in actions[1:]]
    obs, _ = env.set_sim_state(state)
    second = [env.step(a)[0]["image"] for a in actions[1:]]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert "<mujoco" in env.model_xml()
    with pytest.raises(ValueError, match="expected"):
        env.set_sim_state(state[:-1])


@pytest.mark.parametrize("name", ["push", "door"])
def test_task_sets_disjoint_and_stable(name):
    family = make_family(name)
    train = family.sample("train", 20, seed=0)
    test = family.sample("test", 10, seed=0)
    assert not {family._key(t) for t in train} & {family._key(t) for t in test}
    assert [t.params for t in family.sample("train", 20, seed=0)] == [t.params for t in train]
    assert [t.params for t in family.sample("train", 5, seed=0)] == [t.params for t in train[:5]]
    json.dumps(family.env_args())


def test_task_values_fixed_across_runs():
    """Pinned values: a change here silently changes every benchmark's train/test tasks."""
    push = make_family("push").sample("train", 1, seed=0)[0].params
    assert push["goal_x"] == pytest.approx(0.056549819, abs=1e-8)
    assert push["goal_y"] == pytest.approx(0.041424908, abs=1e-8)
    door = make_family("door").sample("test", 1, seed=0)[0].params
    assert door["target_angle"] == pytest.approx(0.402510574, abs=1e-8)
    assert np.deg2rad(15) <= door["target_angle"] <= np.deg2rad(60)


def test_push_goals_in_documented_region():
    goals = np.array([[t.params["goal_x"], t.params["goal_y"]] for t in make_family("push").sample("train", 50)])
    assert goals[:, 0].min() >= -0.10 + 0.10 - 1e-9 and goals[:, 0].max() <= -0.10 + 0.20 + 1e-9
    assert np.abs(goals[:, 1]).max() <= 0.10 + 1e-9


@pytest.mark.parametrize("name", ["push", "door"])
def test_bad_actions_are_rejected(name, request):
    env = request.getfixturevalue(f"{name}_env")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(7, np.float32))
    bad = np.zeros(env.action_space.shape, np.float32)
    bad[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        env.step(bad)


def test_bad_family_and_options_are_rejected():
    with pytest.raises(ValueError, match="unknown task family 'pusher'.*door.*point.*push"):
        make_family("pusher")
    with pytest.raises(ValueError, match="unknown camera 'topview'.*agentview"):
        PushFamily(camera="topview").make_env()
    with pytest.raises(ValueError, match="unknown renderer 'opengl'"):
        PushFamily(renderer="opengl")
    with pytest.raises(ValueError, match="angle_range_deg"):
        DoorFamily(angle_range_deg=(10.0, 120.0))
    with pytest.raises(ValueError, match="bad options"):
        make_family("door", colour="red")


def test_impossible_image_size_is_rejected():
    with pytest.raises(ValueError, match=r"1000x64.*height must be in \[8, 480\]"):
        PushFamily(image_size=(1000, 64)).make_env()


def test_robosuite_renderer_matches_camera_and_size(push_env):
    """One switch away: robosuite's own camera observables, same camera and state as the fast image.

    Built while other GL contexts live in this process (the module's fast envs): robosuite
    alone would then read another context's pixels (noise, mean abs difference ~100).
    """
    env = PushFamily(renderer="robosuite").make_env()
    try:
        robosuite_image = env.reset(seed=0)[0]["image"].astype(int)
        fast_image = push_env.reset(seed=0)[0]["image"].astype(int)
        assert robosuite_image.shape == fast_image.shape == (64, 64, 3)
        assert np.abs(robosuite_image - fast_image).mean() < 40
        obs, _, _, _, _ = env.step(np.zeros(3, np.float32))
        assert np.abs(obs["image"].astype(int) - fast_image).mean() < 40
    finally:
        env.close()
    small = PushFamily(renderer="robosuite", image_size=(48, 64)).make_env()
    try:
        assert small.reset(seed=0)[0]["image"].shape == (48, 64, 3)
    finally:
        small.close()


def test_sync_and_async_vector_envs_agree():
    family = PushFamily(horizon=3)
    tasks = family.sample("train", 2, seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (3, 2, 3)).astype(np.float32)
    results = {}
    for backend in ("sync", "async"):
        vec = make_vector_env(family, 2, backend)
        try:
            vec.set_attr("task", tasks)
            obs, _ = vec.reset(seed=[11, 12])
            images, rewards = [obs["image"]], []
            for action in actions:
                obs, reward, _, _, info = vec.step(action)
                images.append(obs["image"])
                rewards.append(reward)
            results[backend] = (np.stack(images), np.stack(rewards), info["state"]["block_pos"])
        finally:
            vec.close()
    for a, b in zip(results["sync"], results["async"]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(results["sync"][0][:, 0], results["sync"][0][:, 1]), "workers got the same seed"


@pytest.mark.parametrize("name", ["push", "door"])
def test_config_files_build_the_family(name):
    from pathlib import Path

    from omegaconf import OmegaConf

    cfg = OmegaConf.load(Path(__file__).parents[1] / "configs" / "env" / f"{name}.yaml")
    family = make_family(cfg.family, **cfg.kwargs)
    assert family.name == name and family.image_size == (64, 64)
    train = family.sample("train", cfg.tasks.train, seed=cfg.tasks.seed)
    assert len(train) == 20
    args = json.loads(json.dumps(family.env_args()))
    assert args["family"] == name and args["horizon"] == cfg.kwargs.horizon


@pytest.mark.parametrize("controller", ["fast", "robosuite"])
def test_action_moves_end_effector_that_way(controller, push_env):
    """Both controllers read the action as an end-effector delta in the world frame."""
    env = push_env if controller == "fast" else PushFamily(controller="robosuite").make_env()
    try:
        _, info = env.reset(seed=0)
        start, grip_start = info["state"]["eef_pos"], info["state"]["gripper_qpos"][0]
        for _ in range(4):
            _, _, _, _, info = env.step(np.array([0.0, 1.0, 0.0], np.float32))
        moved = info["state"]["eef_pos"] - start
        assert moved[1] > 0.03 and abs(moved[0]) < 0.02 and abs(moved[2]) < 0.02, moved
        assert info["state"]["gripper_qpos"][0] < grip_start - 0.005, "push closes the gripper"
    finally:
        if env is not push_env:
            env.close()


def test_gl_backend_choice(monkeypatch):
    import os

    from robot_envs import rendering

    # select_gl_backend writes these variables; monkeypatch restores them afterwards
    monkeypatch.setenv("PYOPENGL_PLATFORM", os.environ.get("PYOPENGL_PLATFORM", "egl"))
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    monkeypatch.delenv("LP_NUM_THREADS", raising=False)
    assert rendering.select_gl_backend() == "osmesa"  # a user's choice is kept, no probing
    assert os.environ["LP_NUM_THREADS"] == "0"  # llvmpipe rasterises small images in the calling thread
    monkeypatch.setenv("LP_NUM_THREADS", "4")
    rendering.select_gl_backend()
    assert os.environ["LP_NUM_THREADS"] == "4"  # ... unless the user says otherwise
    assert rendering._backend_works("osmesa")  # the fallback really renders here
    assert not rendering._backend_works("no-such-backend")


def test_rendering_then_torch_triton_import_does_not_crash():
    """llvmpipe's LLVM then triton's LLVM in one process segfaulted (torch.func imports triton lazily)."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton not installed")
    code = (
        "from robot_envs.push import PushFamily\n"
        "env = PushFamily().make_env(); env.reset(seed=0); env.close()\n"
        "import triton\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]
