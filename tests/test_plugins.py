"""Families and experts from outside the package (module:Class, entry points), user config folders,
family-declared defaults and metrics, and the optional replay contract."""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from demos.collect import collect_scripted
from demos.replay import replay_demo
from robot_envs import make_family
from robot_envs.plugins import PluginError, resolve
from vision_gmps.adapt import adapt
from vision_gmps.config import ConfigError, load_config
from vision_gmps.rollouts import Sampler
from vision_gmps.train import train

REPO = Path(__file__).resolve().parent.parent
TINY = ["wandb.mode=disabled", "torch_threads=1", "env.kwargs.image_size=[8,8]", "env.kwargs.horizon=5",
        "env.tasks.train=2", "policy.conv_channels=[2]", "policy.conv_strides=[2]", "policy.hidden_sizes=[8]",
        "algo.rollouts_per_task=2", "algo.outer_steps=1", "algo.pretrain_steps=2", "algo.expert.episodes_per_task=1",
        "algo.dagger.rollouts_per_task=1", "train.iterations=1", "train.eval_every=0", "sampler.num_envs=2"]

USER_MODULE = '''
"""A user's family in their own module: point's dynamics under another name, no state saving."""
from robot_envs.point import PointEnv, PointFamily


class NoReplayEnv(PointEnv):
    get_sim_state = None  # this family does not offer exact replay
    set_sim_state = None


class TinyFamily(PointFamily):
    name = "tiny"
    step_metrics = ("distance",)
    expert = "demos.scripted.point:PointExpert"  # an expert named by import path

    def make_env(self, task=None):
        task = task or self.sample("train", 1)[0]
        return NoReplayEnv(task, self.image_size, self.horizon, self.max_step, self.goal_radius)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_tasks.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_tasks:TinyFamily"


def test_a_family_from_a_module_on_sys_path_trains_and_adapts(user_module, tmp_path):
    run = tmp_path / "run"
    trainer = train(load_config([f"env.family={user_module}", *TINY, f"run_dir={run}"]))
    assert type(trainer.family).__name__ == "TinyFamily" and trainer.iteration == 1
    assert type(trainer.expert).__name__ == "PointExpert" and trainer.expert.max_step == trainer.family.max_step
    results = adapt(load_config(["wandb.mode=disabled", f"adapt.checkpoint={run / 'checkpoints' / 'last.pt'}",
                                 "adapt.num_tasks=2", "adapt.steps=1", "adapt.rollouts_per_task=2",
                                 "sampler.num_envs=2", f"run_dir={tmp_path / 'adapt'}"]))
    rows = results["learned"].rows
    assert [r["step"] for r in rows] == [0, 1] and "final_distance" in rows[0]


def test_env_family_alone_uses_the_family_defaults_not_points_kwargs(user_module):
    cfg = load_config([f"env.family={user_module}"])
    assert dict(cfg.env.kwargs) == {}  # point's kwargs are not passed to another family
    assert load_config(["env.family=push"]).env.kwargs.camera == "agentview"  # a named family gets its own config
    cfg = load_config([f"env.family={user_module}", "env.kwargs.horizon=7", "env.kwargs={goal_radius: 0.2}"])
    assert dict(cfg.env.kwargs) == {"horizon": 7, "goal_radius": 0.2}  # no "+env.kwargs" needed
    with pytest.raises(ValueError, match="accepts.*goal_distance"):
        make_family(user_module, no_such_option=1)


def test_unknown_and_unsafe_names_get_clear_errors():
    with pytest.raises(PluginError, match=r"unknown task family 'pushh'; available: .*push.*entry point"):
        make_family("pushh")
    with pytest.raises(PluginError, match="cannot import module 'no_such_pkg.tasks'"):
        make_family("no_such_pkg.tasks:Family")
    with pytest.raises(PluginError, match="no attribute 'Nope'"):
        make_family("robot_envs.point:Nope")
    # a name read from a checkpoint's config is only ever a family class, never an arbitrary callable
    with pytest.raises(PluginError, match="not a subclass of robot_envs.base.TaskFamily"):
        make_family("subprocess:run", args=["true"])
    with pytest.raises(PluginError, match="unknown scripted expert"):
        resolve("vision_gmps.experts", "nobody", {}, kind="scripted expert")


def test_user_config_folders_are_added_to_ours(tmp_path, monkeypatch):
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "mine.yaml").write_text("family: point\nkwargs:\n  horizon: 7\ntasks: {seed: 0, train: 3, test: 2}\n")
    monkeypatch.setenv("VGMPS_CONFIG_PATH", str(tmp_path))
    assert load_config(["env=mine"]).env.kwargs.horizon == 7
    assert load_config(["env.family=mine"]).env.tasks.train == 3  # env.family=NAME picks the user's env/NAME.yaml
    assert load_config(["env=push"]).env.family == "push"  # ours are still there
    monkeypatch.setenv("VGMPS_CONFIG_PATH", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="VGMPS_CONFIG_PATH names folders that do not exist"):
        load_config([])


def test_a_family_without_state_saving_collects_but_replay_says_why(user_module, tmp_path):
    family = make_family(user_module, image_size=(8, 8), horizon=4)
    out = tmp_path / "tiny.hdf5"
    stats = collect_scripted(family, family.sample("train", 1), 1, out, progress=False)
    assert stats.demos == 1
    with pytest.raises(NotImplementedError, match="no get_sim_state"):
        replay_demo(out, "demo_0")


def test_sampler_records_the_metrics_the_family_declares(user_module):
    family = make_family(user_module, image_size=(8, 8), horizon=3)
    family.step_metrics = ("distance",)
    sampler = Sampler(family, num_envs=2)
    try:
        batch = sampler.collect(family.sample("train", 1), 2, lambda obs, s, g: np.zeros((len(g), 2)), seed=0)
    finally:
        sampler.close()
    assert set(batch.extras) == {"distance"} and batch.extras["distance"].shape == (2, 3)
    assert "final_distance" in batch.summary()


def test_demos_imports_nothing_from_vision_gmps():
    offenders = []
    for path in (REPO / "demos").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "vision_gmps"]
    assert not offenders, offenders
