"""RL experts (stable-baselines3 SAC, HER) on point: they solve their tasks, the zoo loads without running code,
GMPS meta-trains from them, `vgmps collect source=experts` writes valid demo files, and every env step is counted.

Budgets were measured (demos/rl/train.py defaults, one core): the goal-conditioned expert reaches every
training goal after ~1500 steps; a per-task expert needs ~2500 (1200 left task 0 at 0/5).
"""

from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from demos.rl.state_env import StateEnv  # noqa: E402
from demos.rl.train import train_zoo  # noqa: E402
from demos.rl.zoo import GOAL_KEYS, ActorMLP, ZooError, ZooExpert, actor_tensors, load_actor, load_zoo_expert  # noqa: E402
from robot_envs import make_family  # noqa: E402

TRAIN_TASKS = 10


@pytest.fixture(scope="module")
def point():
    return make_family("point", image_size=(16, 16))


@pytest.fixture(scope="module")
def goal_zoo(tmp_path_factory, point):
    folder = tmp_path_factory.mktemp("zoo") / "point-goal"
    train_zoo(folder, "goal", "point", {"image_size": [16, 16]}, point.sample("train", TRAIN_TASKS, 0), steps=1500,
              eval_episodes=3)
    return folder


@pytest.fixture(scope="module")
def per_task_zoo(tmp_path_factory, point):
    folder = tmp_path_factory.mktemp("zoo") / "point-per-task"
    train_zoo(folder, "per_task", "point", {"image_size": [16, 16]}, point.sample("train", 1, 0), steps=2500,
              eval_episodes=10)
    return folder


def test_goal_conditioned_expert_reaches_every_training_goal(goal_zoo):
    meta = json.loads((goal_zoo / "zoo.json").read_text())
    (entry,) = meta["experts"]
    assert entry["eval_episodes"] == 3 * TRAIN_TASKS
    assert entry["success"] >= 0.9 and entry["success_low"] > 0.7, entry["per_task_success"]
    assert entry["env_steps"] == 1500 == meta["env_steps"] and entry["wall_s"] > 0
    assert entry["her"]["goal_selection_strategy"] == "future" and entry["sac"]["net_arch"] == [64, 64]


def test_per_task_expert_reaches_its_task_and_refuses_other_tasks(per_task_zoo, point):
    meta = json.loads((per_task_zoo / "zoo.json").read_text())
    (entry,) = meta["experts"]
    assert entry["success"] >= 0.9, entry
    expert = ZooExpert(per_task_zoo)
    env = point.make_env(point.sample("train", 2, 0)[1])  # task 1 has no expert in this zoo
    _, info = env.reset(seed=0)
    with pytest.raises(ZooError, match="has no expert"):
        expert.act(info["state"])
    with pytest.raises(ZooError, match="has no expert"):
        load_zoo_expert(per_task_zoo, point, point.sample("train", 2, 0))


def test_training_an_expert_leaves_nothing_in_the_temp_folder(tmp_path, monkeypatch, point):
    """SB3's default logger makes an empty /tmp/SB3-<date> folder per model; the zoo gives it a silent one."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    train_zoo(tmp_path / "zoo", "goal", "point", {"image_size": [16, 16]}, point.sample("train", 2, 0), steps=60,
              eval_episodes=1)
    assert (tmp_path / "zoo" / "zoo.json").is_file() and not list(scratch.glob("SB3-*"))


def test_exported_actor_is_sb3s_deterministic_action(point):
    """The tensors-only actor the zoo loads gives exactly SB3's deterministic action, for both observation kinds."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.her import HerReplayBuffer

    tasks = point.sample("train", 2, 0)
    for goal in (False, True):
        env = StateEnv(point, tasks, goal_conditioned=goal)
        extra = {"replay_buffer_class": HerReplayBuffer} if goal else {}
        model = SAC("MultiInputPolicy" if goal else "MlpPolicy", env, learning_starts=50, policy_kwargs={"net_arch": [8]},
                    seed=0, device="cpu", **extra)
        model.set_logger(Logger(folder=None, output_formats=[]))  # no /tmp/SB3-<date> folder
        model.learn(120)
        actor = ActorMLP(actor_tensors(model))
        obs, _ = env.reset(seed=3)
        ours = actor.act((np.concatenate([obs[k] for k in GOAL_KEYS]) if goal else obs)[None])[0]
        theirs, _ = model.predict(obs, deterministic=True)
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
        env.close()


def test_zoo_round_trips_and_act_matches_act_batch(goal_zoo, point):
    expert = load_zoo_expert(goal_zoo, point, point.sample("train", TRAIN_TASKS, 0))
    env = point.make_env(point.sample("test", 1, 0)[0])
    states = []
    _, info = env.reset(seed=1)
    for _ in range(5):
        states.append(info["state"])
        _, _, _, _, info = env.step(expert.act(info["state"]))
    batch = {k: np.stack([s[k] for s in states]) for k in states[0]}
    np.testing.assert_allclose(expert.act_batch(batch), np.stack([expert.act(s) for s in states]), atol=1e-6)
    again = ZooExpert(goal_zoo)
    np.testing.assert_array_equal(again.act_batch(batch), expert.act_batch(batch))


def test_crafted_expert_file_is_refused_without_running_it(goal_zoo, tmp_path):
    marker = tmp_path / "payload_ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    for f in goal_zoo.iterdir():
        (zoo / f.name).write_bytes(f.read_bytes())
    weights = zoo / json.loads((zoo / "zoo.json").read_text())["experts"][0]["weights"]
    weights.write_bytes(pickle.dumps({"layers.0.weight": Payload()}))
    with pytest.raises(ZooError, match="not a weights-only expert file"):
        ZooExpert(zoo)
    assert not marker.exists()
    torch.save({"layers.0.weight": Payload()}, weights)  # a torch zip carrying the payload is refused too
    with pytest.raises(ZooError, match="not a weights-only expert file"):
        load_actor(weights)
    assert not marker.exists()


def test_zoo_for_another_family_or_state_layout_is_refused_before_rollouts(goal_zoo, tmp_path):
    door = make_family("door")  # building the family builds no env
    with pytest.raises(ZooError, match="holds 'point' experts"):
        load_zoo_expert(goal_zoo, door)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    for f in goal_zoo.iterdir():
        (zoo / f.name).write_bytes(f.read_bytes())
    meta = json.loads((zoo / "zoo.json").read_text())
    meta["obs_layout"] = [["goal", 2], ["position", 3]]
    (zoo / "zoo.json").write_text(json.dumps(meta))
    with pytest.raises(ZooError, match="privileged state"):
        load_zoo_expert(zoo, make_family("point"))


def test_existing_zoo_is_not_overwritten(goal_zoo, point):
    with pytest.raises(ZooError, match="already exists"):
        train_zoo(goal_zoo, "goal", "point", {}, point.sample("train", 2, 0), steps=10)


def test_experts_list_and_eval_take_the_folder_either_way_and_refuse_bad_input(goal_zoo, tmp_path, capsys):
    from vision_gmps.cli import main

    assert main(["experts", "list", str(goal_zoo)]) == 0
    listed = capsys.readouterr().out
    assert main(["experts", "list", f"zoo={goal_zoo}"]) == 0  # train spells it zoo=PATH: list accepts that too
    assert capsys.readouterr().out == listed and "goal" in listed
    assert main(["experts", "list", f"zoo={tmp_path}"]) != 0
    err = capsys.readouterr().err
    assert "no zoo.json" in err and f"vgmps experts train zoo={tmp_path}`" in err
    assert main(["experts", "eval", str(goal_zoo), "--episodes", "0"]) == 2
    assert "--episodes must be >= 1" in capsys.readouterr().err


def test_collect_source_experts_writes_a_valid_demo_file(goal_zoo, tmp_path):
    from demos.cli import demos_main
    from vision_gmps.cli import main

    out = tmp_path / "rl.hdf5"
    assert main(["collect", "source=experts", f"zoo={goal_zoo}", "env.kwargs.image_size=[16,16]", "env.tasks.train=3",
                 "demos_per_task=2", f"output={out}", "progress=false"]) == 0
    assert demos_main(["validate", str(out)]) == 0
    from demos.hdf5 import DemoReader

    with DemoReader(out) as reader:
        assert len(reader.demos) == 6
        assert {str(reader.file["data"][n].attrs["source"]) for n in reader.demos} == {"experts"}
        assert all(bool(reader.file["data"][n].attrs["success"]) for n in reader.demos)


FAST = ["wandb.mode=disabled", "env.kwargs.image_size=[16,16]", "policy.conv_channels=[8,8,8]",
        f"env.tasks.train={TRAIN_TASKS}", "train.checkpoint_every=100"]


def test_every_env_step_is_counted(goal_zoo, tmp_path, monkeypatch):
    from robot_envs.point import PointEnv
    from vision_gmps.config import load_config
    from vision_gmps.run_logging import RunLogger
    from vision_gmps.trainer import MetaTrainer

    calls = {"n": 0}
    step = PointEnv.step

    def counted(self, action):
        calls["n"] += 1
        return step(self, action)

    monkeypatch.setattr(PointEnv, "step", counted)
    cfg = load_config([*FAST, "algo.expert.source=zoo", f"algo.expert.zoo={goal_zoo}", "train.iterations=2",
                       "train.eval_every=1", "train.eval_tasks=2", "algo.rollouts_per_task=4", f"run_dir={tmp_path}"])
    trainer = MetaTrainer(cfg, tmp_path)
    trainer.run(RunLogger(tmp_path, cfg, "train"))
    trainer.sampler.close()
    last = [json.loads(line) for line in (tmp_path / "train_metrics.jsonl").read_text().splitlines()][-1]
    parts = {k: v for k, v in last.items() if k.startswith("steps/") and k not in ("steps/total", "steps/sampler_padding")}
    assert last["steps/total"] == sum(parts.values())
    zoo = json.loads((goal_zoo / "zoo.json").read_text())
    assert last["steps/experts_training"] == zoo["env_steps"] and last["steps/experts_eval"] == zoo["eval_env_steps"]
    ours = sum(v for k, v in parts.items() if not k.startswith("steps/experts_"))
    # the sampler also steps (and drops) padding envs in a last, partial wave: counted apart, out of the total
    assert ours + last["steps/sampler_padding"] == calls["n"] and ours > 0 and last["steps/sampler_padding"] > 0
    assert min(parts[f"steps/{p}"] for p in ("expert_episodes", "dagger", "meta_pre", "eval")) > 0


@pytest.mark.slow
def test_gmps_meta_trained_from_rl_experts_adapts_on_held_out_tasks(goal_zoo, tmp_path):
    """As tests/test_learning.py, with the RL zoo as the expert (expert episodes and DAgger labels)."""
    from vision_gmps.adaptation import run_adaptation
    from vision_gmps.config import load_config
    from vision_gmps.run_logging import RunLogger
    from vision_gmps.trainer import MetaTrainer

    cfg = load_config([*FAST, "algo.expert.source=zoo", f"algo.expert.zoo={goal_zoo}", "train.iterations=30",
                       "train.eval_every=0", f"run_dir={tmp_path}"])
    trainer = MetaTrainer(cfg, tmp_path)
    assert isinstance(trainer.expert, ZooExpert)
    trainer.run(RunLogger(tmp_path, cfg, "train"))
    tasks = trainer.family.sample("test", 20, cfg.env.tasks.seed)
    learned = {k: v.detach() for k, v in trainer.step_sizes.as_dict().items()}
    result = run_adaptation(trainer.policy, learned, trainer.sampler, tasks, steps=1,
                            rollouts_per_task=cfg.algo.rollouts_per_task, seed=123)
    trainer.sampler.close()
    before, after = result.rows[0]["success"], result.rows[1]["success"]
    print(f"held-out success from RL experts: before {before:.2f}, after one step {after:.2f}")
    assert after >= before + 0.3
