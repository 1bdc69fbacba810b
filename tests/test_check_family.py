"""robot_envs.testing.check_family: our families pass it, and it catches the mistakes it names."""

from __future__ import annotations

import numpy as np
import pytest

from demos.scripted import expert_for
from robot_envs import make_family
from robot_envs.point import PointEnv, PointFamily
from robot_envs.testing import FamilyCheckError, check_family


@pytest.mark.parametrize("name,kwargs", [
    ("point", {}),
    ("push", {"image_size": (16, 16), "horizon": 4}),
    ("door", {"image_size": (16, 16), "horizon": 4}),
])
def test_our_families_meet_the_contract(name, kwargs):
    family = make_family(name, **kwargs)
    check_family(family, expert=expert_for(family), num_tasks=3)


class _GoalInImage(PointEnv):
    def render(self):
        img = super().render()
        img[1, 1] = int(120 + 100 * self.task.params["goal_x"])  # one pixel gives the goal away
        return img


class _EndsEarly(PointEnv):
    def step(self, action):
        obs, reward, _, truncated, info = super().step(action)
        return obs, reward, self._t >= 2, truncated, info


class _IgnoresTask(PointEnv):
    def reset(self, *, seed=None, options=None):
        self.task = self._first  # keeps its first task: vector workers would all run one task
        return super().reset(seed=seed, options=options)


class _Broken(PointFamily):
    env_cls: type = PointEnv

    def make_env(self, task=None):
        task = task or self.sample("train", 1)[0]
        env = self.env_cls(task, self.image_size, self.horizon, self.max_step, self.goal_radius)
        env._first = task
        return env


@pytest.mark.parametrize("env_cls,message", [
    (_GoalInImage, "hidden parameter: images differ between tasks"),
    (_EndsEarly, "terminated=True at step 2"),
    (_IgnoresTask, r"set_attr\(.task., ...\) did not set env.task"),
])
def test_it_names_what_a_broken_family_gets_wrong(env_cls, message):
    family = type("Family", (_Broken,), {"env_cls": env_cls})()
    with pytest.raises(FamilyCheckError, match=message):
        check_family(family)


def test_it_checks_the_expert_and_the_declared_metrics():
    class BadExpert:
        def act(self, state):
            return np.zeros(2, np.float32)

        def act_batch(self, states):
            return np.zeros((1, 2), np.float32)  # one label for two states

    family = PointFamily()
    family.step_metrics = ("distance", "angle_error")
    with pytest.raises(FamilyCheckError) as err:
        check_family(family, expert=BadExpert())
    assert "info lacks ['angle_error']" in str(err.value) and "act_batch returned shape (1, 2)" in str(err.value)
