"""``check_family``: the env contract of ``robot_envs/base.py``, checked on a family (like gymnasium's ``check_env``).

A family author calls it in their own tests::

    from demos.scripted import expert_for
    from robot_envs.testing import check_family

    def test_my_family_meets_the_contract():
        family = MyFamily(image_size=(16, 16), horizon=8)
        check_family(family, expert=expert_for(family))

Every check runs, and one ``FamilyCheckError`` lists all that failed, each with what to fix.
Use a small image and horizon: the check builds one env and a two-env vector env.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from robot_envs.base import SPLITS, TaskFamily, has_goal_contract, supports_replay
from robot_envs.vector import make_vector_env


class FamilyCheckError(AssertionError):
    """The family breaks the contract; the message lists every failed check."""


def _state_close(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(np.allclose(np.asarray(a[k], float), np.asarray(b[k], float)) for k in a)


def check_splits(family: TaskFamily, n: int, seed: int) -> None:
    """Seeded, stable, disjoint task splits."""
    for split in SPLITS:
        first, again = family.sample(split, n, seed), family.sample(split, n, seed)
        assert [t.params for t in first] == [t.params for t in again], f"sample({split!r}, {n}, seed) is not repeatable"
        more = family.sample(split, n + 2, seed)
        assert [t.params for t in more[:n]] == [t.params for t in first], \
            f"the first {n} {split} tasks change when more are requested: draw each task from the same stream in order"
        assert all(t.family == family.name and t.split == split for t in first), "tasks must carry the family's name and split"
        assert len({tuple(sorted(t.params.items())) for t in first}) == n, f"{split} tasks repeat: the hidden parameter must vary"
    train = {tuple(sorted(t.params.items())) for t in family.sample("train", n, seed)}
    assert not train & {tuple(sorted(t.params.items())) for t in family.sample("test", n, seed)}, "train and test tasks overlap"
    other = family.sample("train", n, seed + 1)
    assert [t.params for t in other] != [t.params for t in family.sample("train", n, seed)], "the task seed has no effect"
    json.dumps(family.env_args())  # stored in checkpoints and demo files: must be JSON


def check_spaces_and_info(env: gym.Env, family: TaskFamily) -> None:
    space = env.observation_space
    assert isinstance(space, gym.spaces.Dict) and {"image", "proprio"} <= set(space.spaces), \
        "observation_space must be a Dict with 'image' and 'proprio'"
    image = space["image"]
    assert image.dtype == np.uint8 and len(image.shape) == 3 and image.shape[2] == 3, "image must be uint8 HxWx3"
    assert space["proprio"].dtype == np.float32 and len(space["proprio"].shape) == 1, "proprio must be float32 [k]"
    action = env.action_space
    assert isinstance(action, gym.spaces.Box) and np.all(action.low == -1) and np.all(action.high == 1), \
        "action_space must be a Box in [-1, 1]"
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == image.shape and obs["image"].dtype == np.uint8, "reset's image does not match the space"
    assert obs["proprio"].shape == space["proprio"].shape, "reset's proprio does not match the space"
    missing = [k for k in ("success", "dense_reward", "state", *family.step_metrics) if k not in info]
    assert not missing, f"info lacks {missing} (success, dense_reward, state and the family's step_metrics)"
    assert isinstance(info["success"], (bool, np.bool_)), "info['success'] must be a bool"
    assert np.isscalar(info["dense_reward"]), "info['dense_reward'] must be a float"
    assert isinstance(info["state"], dict) and info["state"], "info['state'] must be a non-empty dict of arrays"
    assert all(np.isscalar(info[k]) for k in family.step_metrics), "each step metric must be a scalar"


def check_fixed_length(env: gym.Env, family: TaskFamily) -> None:
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    for t in range(1, family.horizon + 1):
        _, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        assert not terminated, f"terminated=True at step {t}: episodes have a fixed length (only truncated, at horizon)"
        assert bool(truncated) == (t == family.horizon), f"truncated={truncated} at step {t} of horizon {family.horizon}"
        assert np.isfinite(reward), "reward must be finite"
        missing = [k for k in ("success", "dense_reward", "state", *family.step_metrics) if k not in info]
        assert not missing, f"step's info lacks {missing}"


def check_hidden_parameter(env: gym.Env, family: TaskFamily, seed: int) -> None:
    """Different tasks, same reset seed and actions: identical images (the parameter is learned from reward)."""
    tasks = family.sample("train", 2, seed)
    frames = []
    for task in tasks:
        env.task = task
        obs, _ = env.reset(seed=3)
        images = [obs["image"]]
        for _ in range(min(3, family.horizon)):
            images.append(env.step(np.zeros(env.action_space.shape, np.float32))[0]["image"])
        frames.append(np.stack(images))
    assert np.array_equal(frames[0], frames[1]), \
        "images differ between tasks for the same seed and actions: the image shows the hidden parameter"


def check_reset_determinism(env: gym.Env) -> None:
    a, info_a = env.reset(seed=5)
    b, info_b = env.reset(seed=5)
    assert np.array_equal(a["image"], b["image"]) and _state_close(info_a["state"], info_b["state"]), \
        "reset(seed=s) twice gives different observations: draw start noise from self.np_random"


def check_replay(env: gym.Env) -> None:
    """Optional state save/restore: restoring a saved state renders the same image."""
    if not supports_replay(env):
        return
    env.reset(seed=2)
    obs = env.step(np.full(env.action_space.shape, 0.5, np.float32))[0]  # moving: a stale render would show
    saved = np.asarray(env.get_sim_state()).copy()
    env.step(-np.ones(env.action_space.shape, np.float32))
    restored = env.set_sim_state(saved)
    assert isinstance(restored, tuple) and len(restored) == 2, "set_sim_state must return (obs, info)"
    assert np.array_equal(restored[0]["image"], obs["image"]), "set_sim_state(get_sim_state()) renders a different image"


def check_vector_tasks(family: TaskFamily, seed: int, expert: Any | None) -> None:
    """``env.task`` assigned through a vector env takes effect; the expert labels the batch like one by one."""
    tasks = family.sample("train", 2, seed)
    single = family.make_env(tasks[0])
    vec = make_vector_env(family, 2, "sync")
    try:
        vec.set_attr("task", tasks)
        _, info = vec.reset(seed=[11, 12])
        states = {k: v for k, v in info["state"].items() if not k.startswith("_")}  # gymnasium adds "_key" masks
        assert list(vec.get_attr("task")) == tasks, "vec.set_attr('task', ...) did not set env.task"
        for i, task in enumerate(tasks):
            single.task = task
            _, ref = single.reset(seed=11 + i)
            got = {k: v[i] for k, v in states.items()}
            assert _state_close(got, ref["state"]), \
                f"worker {i}'s state does not match a fresh env on its task: assigning env.task must switch tasks"
        if expert is not None:
            labels = np.asarray(expert.act_batch(states))
            assert labels.shape == (2, *vec.single_action_space.shape), f"act_batch returned shape {labels.shape}"
            assert np.all(np.isfinite(labels)) and np.all(np.abs(labels) <= 1), "expert actions must be finite, in [-1, 1]"
            one = np.stack([expert.act({k: v[i] for k, v in states.items()}) for i in range(2)])
            assert np.allclose(labels, one, atol=1e-5), "act_batch disagrees with act on the same states"
    finally:
        vec.close()
        single.close()


def check_goal_contract(env: gym.Env, family: TaskFamily, expert: Any | None) -> None:
    """Optional goal contract: its success test is ``info["success"]`` at every step, the desired goal stays the
    task's through an episode, and both functions work on a batch of states as on one."""
    if not has_goal_contract(family):
        return
    _, info = env.reset(seed=5)
    states, desired0 = [], np.asarray(family.goal_desired(info["state"]))
    rng = np.random.default_rng(5)
    done = False
    while not done:
        state = info["state"]
        states.append(state)
        achieved, desired = family.goal_achieved(state), family.goal_desired(state)
        assert np.asarray(achieved).shape == np.asarray(desired).shape, "goal_achieved and goal_desired differ in shape"
        assert np.allclose(desired, desired0), "goal_desired changed within an episode: it must be the task's parameter"
        assert bool(family.goal_success(achieved, desired)) == bool(info["success"]), \
            "goal_success(goal_achieved(state), goal_desired(state)) disagrees with info['success']"
        action = expert.act(state) if expert is not None else rng.uniform(-1, 1, env.action_space.shape)
        _, _, terminated, truncated, info = env.step(np.asarray(action, np.float32))
        done = terminated or truncated
    batch = {k: np.stack([np.asarray(s[k]) for s in states]) for k in states[0]}
    one = np.stack([family.goal_success(family.goal_achieved(s), family.goal_desired(s)) for s in states])
    both = family.goal_success(family.goal_achieved(batch), family.goal_desired(batch))
    assert np.array_equal(np.asarray(both).ravel(), one.ravel()), "goal functions give other results on a batch of states"


def check_render_switch(env: gym.Env) -> None:
    """Optional ``render_images=False``: blank images of the same shape, the same privileged state."""
    if not hasattr(env, "render_images"):
        return
    obs, info = env.reset(seed=3)
    env.render_images = False
    try:
        blank, info_blank = env.reset(seed=3)
    finally:
        env.render_images = True
    assert blank["image"].shape == obs["image"].shape and not blank["image"].any(), "render_images=False must give blank images"
    assert _state_close(info_blank["state"], info["state"]), "render_images=False changed the privileged state"


def check_family(family: TaskFamily, expert: Any | None = None, seed: int = 0, num_tasks: int = 4) -> None:
    """Run every contract check on ``family`` (and ``expert`` when given); raise ``FamilyCheckError`` listing failures."""
    problems: list[str] = []

    def run(name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except AssertionError as err:
            problems.append(f"{name}: {err}")
        except Exception as err:  # noqa: BLE001 - a crash is a failed check too, reported with the others
            problems.append(f"{name}: raised {type(err).__name__}: {err}")

    run("splits", lambda: check_splits(family, num_tasks, seed))
    env = family.make_env(family.sample("train", 1, seed)[0])
    try:
        run("spaces and info", lambda: check_spaces_and_info(env, family))
        run("fixed-length episodes", lambda: check_fixed_length(env, family))
        run("hidden parameter", lambda: check_hidden_parameter(env, family, seed))
        run("seeded reset", lambda: check_reset_determinism(env))
        run("state save/restore", lambda: check_replay(env))
        run("goal contract", lambda: check_goal_contract(env, family, expert))
        run("render switch", lambda: check_render_switch(env))
    finally:
        env.close()
    run("task assignment and expert", lambda: check_vector_tasks(family, seed, expert))
    if problems:
        raise FamilyCheckError(f"family {family.name!r} breaks the env contract:\n  " + "\n  ".join(problems))
