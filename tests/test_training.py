"""End-to-end plumbing on the point family: train, checkpoint, resume, adapt, and bad input."""

from __future__ import annotations

import json
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch

from robot_envs.errors import UserError
from robot_envs.point import PointFamily
from vision_gmps.adapt import adapt
from vision_gmps.checkpoint import CheckpointError, load_checkpoint, policy_from_checkpoint
from vision_gmps.config import ConfigError, load_config
from vision_gmps.rollouts import PolicyActor, Sampler
from vision_gmps.train import train

TINY = [
    "wandb.mode=disabled",
    "env.tasks.train=3",
    "env.kwargs.horizon=8",
    "env.kwargs.image_size=[16,16]",
    "policy.conv_channels=[4,4]",
    "policy.conv_strides=[2,1]",
    "policy.hidden_sizes=[16]",
    "algo.rollouts_per_task=3",
    "algo.outer_steps=2",
    "train.eval_every=0",
    "train.checkpoint_every=1",
    "sampler.num_envs=4",
]


EXPERT = ["algo.expert.episodes_per_task=2", "algo.dagger.rollouts_per_task=1"]


def _cfg(tmp_path, *extra: str, algo: str = "gmps"):
    algo_specific = {"gmps": EXPERT, "bc": EXPERT[:1], "maml": []}[algo]
    return load_config([f"algo={algo}", *TINY, *algo_specific, f"run_dir={tmp_path}", *extra])


@pytest.mark.parametrize("algo", ["gmps", "maml", "bc"])
def test_train_writes_a_checkpoint_that_adapt_consumes(tmp_path, algo):
    trainer = train(_cfg(tmp_path, "train.iterations=2", algo=algo))
    ckpt = tmp_path / "checkpoints" / "last.pt"
    assert ckpt.is_file() and (tmp_path / "train_config.yaml").is_file()
    lines = (tmp_path / "train_metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "loss" in lines[-1]
    assert trainer.env_episodes > 0

    results = adapt(load_config(["wandb.mode=disabled", f"adapt.checkpoint={ckpt}", "adapt.num_tasks=2",
                                 "adapt.steps=2", "adapt.rollouts_per_task=3", "adapt.step_size=both",
                                 f"run_dir={tmp_path / 'adapt'}"]))
    assert set(results) == {"learned", "fixed"}
    assert [r["step"] for r in results["learned"].rows] == [0, 1, 2]
    assert results["learned"].rows[-1]["episodes"] == 2 * 2 * 3
    assert (tmp_path / "adapt" / "adapt_results.md").is_file()
    assert (tmp_path / "adapt" / "task0_before_after.mp4").stat().st_size > 0


@pytest.mark.parametrize("algo", ["gmps", "maml"])
def test_meta_training_through_the_natural_step_trains_and_adapts(tmp_path, algo, monkeypatch):
    """algo.inner_step=natural: the outer loss and the post-update rollouts take the natural step, and so does adapt."""
    import vision_gmps.inner as inner

    calls: list[tuple[float, bool]] = []
    real = inner.natural_output_step

    def recording(policy, params, tb, scale, damping=1e-3, features=None, create_graph=False):
        calls.append((scale, create_graph))
        return real(policy, params, tb, scale, damping, features, create_graph)

    monkeypatch.setattr(inner, "natural_output_step", recording)
    natural = ["algo.inner_step=natural", "adapt.step_size=natural", "adapt.natural_step_scale=1.5"]
    trainer = train(_cfg(tmp_path, "train.iterations=1", *natural, algo=algo))
    assert trainer.inner_natural_scale == 1.5
    assert (1.5, True) in calls  # the meta-loss, differentiated through the step
    assert (1.5, False) in calls  # the adapted policy's rollouts (DAgger or MAML's post-update batch)
    results = adapt(load_config(["wandb.mode=disabled", f"adapt.checkpoint={tmp_path / 'checkpoints' / 'last.pt'}",
                                 "adapt.num_tasks=2", "adapt.steps=1", "adapt.rollouts_per_task=3",
                                 f"run_dir={tmp_path / 'adapt'}"]))
    assert set(results) == {"natural"}  # the stored config's meta-test step


def test_learned_step_scale_multiplies_the_first_adaptation_step(tmp_path):
    """adapt.learned_step_scale=2 moves every adapted parameter exactly twice as far on the same rollouts."""
    train(_cfg(tmp_path, "train.iterations=1", "env.kwargs.goal_distance=0.35"))  # near goals: some rollouts score
    ckpt = tmp_path / "checkpoints" / "last.pt"
    policy, _ = policy_from_checkpoint(load_checkpoint(ckpt))
    start = {k: v.detach() for k, v in policy.params().items()}
    moved = {}
    for scale in (1.0, 2.0):
        result = adapt(load_config(["wandb.mode=disabled", f"adapt.checkpoint={ckpt}", "adapt.num_tasks=2", "adapt.steps=1",
                                    "adapt.rollouts_per_task=3", f"adapt.learned_step_scale={scale}",
                                    f"run_dir={tmp_path / f'adapt{scale}'}"]))["learned"]
        moved[scale] = [{n: p[n] - start[n] for n in policy.adapted_names} for p in result.final_params]
    for once, twice in zip(moved[1.0], moved[2.0]):
        assert any(d.abs().max() > 0 for d in once.values())
        for n in once:
            torch.testing.assert_close(twice[n], 2 * once[n])
    with pytest.raises(ConfigError, match="adapt.learned_step_scale"):
        adapt(load_config(["wandb.mode=disabled", f"adapt.checkpoint={ckpt}", "adapt.learned_step_scale=0"]))
    # point has 2 action dimensions: a 3-number exploration shift is refused before any env starts
    with pytest.raises(ConfigError, match="explore_log_std_shift has 3 values but the policy has 2"):
        adapt(load_config(["wandb.mode=disabled", f"adapt.checkpoint={ckpt}", "adapt.explore_log_std_shift=[0,0.3,0]",
                           f"run_dir={tmp_path / 'refused'}"]))
    assert not (tmp_path / "refused").exists()
    with pytest.raises(ConfigError, match="unrewarded_log_std_shift has 3 values but the policy has 2"):
        adapt(load_config(["wandb.mode=disabled", f"adapt.checkpoint={ckpt}", "adapt.unrewarded_below=0.2",
                           "adapt.unrewarded_log_std_shift=[0,0.3,0]", f"run_dir={tmp_path / 'refused'}"]))
    assert not (tmp_path / "refused").exists()
    # training adapts for its learning curve with the same shift: refused before the first iteration
    with pytest.raises(ConfigError, match="adapt.explore_log_std_shift has 3 values but the policy has 2"):
        train(_cfg(tmp_path / "refused_train", "adapt.explore_log_std_shift=[0,0.3,0]"))
    assert not (tmp_path / "refused_train" / "checkpoints").exists()


def test_checkpoint_round_trips_bit_exactly_and_loads_without_code(tmp_path):
    trainer = train(_cfg(tmp_path, "train.iterations=1"))
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    policy, step_sizes = policy_from_checkpoint(state)
    for name, tensor in trainer.policy.state_dict().items():
        assert torch.equal(tensor, policy.state_dict()[name]), name
    for a, b in zip(trainer.step_sizes.values, step_sizes.values):
        assert torch.equal(a, b)
    for i in range(trainer.buffer.num_tasks):
        assert np.array_equal(trainer.buffer.images[i], state["buffer"]["tasks"][i]["images"].numpy())


class _Boom:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_loading_a_checkpoint_never_executes_code(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format_version": 1, "x": _Boom()}, f)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_resume_matches_an_uninterrupted_run(tmp_path):
    straight = train(_cfg(tmp_path / "a", "train.iterations=3"))
    train(_cfg(tmp_path / "b", "train.iterations=2"))
    resumed = train(_cfg(tmp_path / "b", "train.iterations=3", "resume=true"))
    assert resumed.env_episodes == straight.env_episodes
    for name, tensor in straight.policy.state_dict().items():
        torch.testing.assert_close(resumed.policy.state_dict()[name], tensor, rtol=1e-5, atol=1e-6)


def test_config_typos_name_the_key():
    with pytest.raises(ConfigError, match="outer_lrr"):
        load_config(["algo.outer_lrr=0.1"])
    with pytest.raises(ConfigError, match="pointt"):
        load_config(["env=pointt"])


def test_checkpoint_from_another_policy_shape_is_refused(tmp_path):
    train(_cfg(tmp_path, "train.iterations=1"))
    ckpt = tmp_path / "checkpoints" / "last.pt"
    with pytest.raises(CheckpointError, match=r"experiment differs.*env.kwargs.image_size: checkpoint \[16, 16\], now \[20, 20\]"):
        train(_cfg(tmp_path, "train.iterations=2", "resume=true", "env.kwargs.image_size=[20,20]"))
    with pytest.raises(CheckpointError, match="does not exist"):
        adapt(load_config(["wandb.mode=disabled", f"adapt.checkpoint={tmp_path / 'missing.pt'}"]))
    with pytest.raises(ConfigError, match="needs a checkpoint"):
        adapt(load_config(["wandb.mode=disabled"]))
    assert ckpt.is_file()


class _NaNProprio(gym.ObservationWrapper):
    def observation(self, obs):
        return {**obs, "proprio": np.full_like(obs["proprio"], np.nan)}


class _NaNFamily(PointFamily):
    def make_env(self, task=None):
        return _NaNProprio(super().make_env(task))


def test_nan_observations_and_actions_are_reported(tmp_path):
    trainer = train(_cfg(tmp_path, "train.iterations=1"))
    family = _NaNFamily(image_size=(16, 16), horizon=8)
    sampler = Sampler(family, num_envs=2)
    params = [trainer.policy.params()]
    with pytest.raises(FloatingPointError, match="proprio observation contains NaN"):
        sampler.collect(family.sample("train", 1), 1, PolicyActor(trainer.policy, params), seed=0)
    with pytest.raises(FloatingPointError, match="action contains NaN"):
        trainer.sampler.collect(trainer.train_tasks[:1], 1, lambda obs, s, g: np.full((len(g), 2), np.nan), seed=0)


def test_wandb_offline_needs_no_login(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    train(_cfg(tmp_path, "train.iterations=1", "wandb.mode=offline"))
    adapt(load_config(["wandb.mode=offline", f"adapt.checkpoint={tmp_path / 'checkpoints' / 'last.pt'}",
                       "adapt.num_tasks=2", "adapt.steps=1", "adapt.rollouts_per_task=2"]))
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))  # the training run
    adapt_runs = sorted((tmp_path / "adapt" / "wandb").glob("offline-run-*"))
    assert len(adapt_runs) == 1
    videos = list(adapt_runs[0].glob("files/media/videos/**/*.mp4"))
    assert videos, "the before/after video reached the wandb run"


def _point_demos(path, n_tasks: int, image_size=(16, 16)):
    from demos.collect import collect_scripted

    family = PointFamily(image_size=image_size, horizon=8)
    collect_scripted(family, family.sample("train", n_tasks), 2, path, noise=0.2, seed=0, progress=False)
    return path


def test_bc_pretraining_fits_the_expert_before_meta_training(tmp_path):
    trainer = train(_cfg(tmp_path, "train.iterations=1", "algo.pretrain_steps=60", "algo.outer_lr=3e-3"))
    first = json.loads((trainer.run_dir / "train_metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 0
    assert first["pretrain/bc_loss"] < 0.7 * first["pretrain/bc_loss_first"], first


def test_gmps_trains_from_a_demo_file(tmp_path):
    demo_file = _point_demos(tmp_path / "demos.hdf5", 3)
    trainer = train(_cfg(tmp_path / "run", "train.iterations=1", "algo.expert.source=demos",
                         f"algo.expert.demo_files=[{demo_file}]", "algo.dagger.enabled=false"))
    # 3 tasks x 2 demos x 8 steps, read from the file; nothing was collected by a scripted expert.
    assert [trainer.buffer.demo_size(i) for i in range(3)] == [16, 16, 16]
    assert trainer.buffer.memory_size(0) == 0


def test_mismatched_demo_files_fail_before_training(tmp_path):
    wrong_size = _point_demos(tmp_path / "wrong_size.hdf5", 3, image_size=(20, 20))
    too_few = _point_demos(tmp_path / "too_few.hdf5", 2)
    base = ["train.iterations=1", "algo.expert.source=demos", "algo.dagger.enabled=false"]
    with pytest.raises(Exception, match="image size 20x20, config says 16x16"):
        train(_cfg(tmp_path / "a", *base, f"algo.expert.demo_files=[{wrong_size}]"))
    with pytest.raises(UserError, match=r"no demos for training tasks \['point/train/2'\]"):
        train(_cfg(tmp_path / "b", *base, f"algo.expert.demo_files=[{too_few}]"))
    assert not (tmp_path / "a" / "checkpoints").exists() and not (tmp_path / "b" / "checkpoints").exists()


def test_demo_job_writes_a_report_with_every_section(tmp_path):
    """The main job end to end at toy size: record push demos, train GMPS from the file, adapt, report."""
    from demos.hdf5 import DemoReader
    from vision_gmps.demo import run_demo

    # 2 of the 3 training tasks per iteration, as the main job meta-trains on 10 of its 40 (push_cpu)
    cfg = load_config([*TINY, "algo.meta_batch_size=2", "algo.dagger.rollouts_per_task=1", "policy.adapt=[head.2,bias_transform]",
                       "demo.demos_per_task=1", "algo.pretrain_steps=3", f"run_dir={tmp_path}", "train.iterations=2",
                       "train.eval_every=1", "train.eval_tasks=2", "adapt.num_tasks=2", "adapt.steps=1",
                       "adapt.rollouts_per_task=2", "adapt.step_size=both"], config_name="demo")
    assert cfg.env.family == "push"
    report = run_demo(cfg).read_text()
    for section in ("## What this shows", "## Configuration", "## Learning curve", "## Adaptation on held-out test tasks",
                    "## Video", "## Held-out tasks after adaptation"):
        assert section in report, section
    assert "| adaptation (learned step sizes) | 1 |" in report and "| adaptation (fixed step sizes) | 1 |" in report
    assert "| reward-shuffled control | 1 |" in report and "The reward-shuffled control" in report
    assert "**validation split**" in report and "95% Wilson" in report
    assert (tmp_path / "adapt" / "after_adaptation_sheet.png").stat().st_size > 0
    assert "(3 of them the scripted demonstrations it learned from)" in report
    assert report.splitlines()[2].startswith("**Environment-step budget: ")  # the first paragraph, experts included
    assert "recorded demonstrations" in report.splitlines()[2]
    with DemoReader(tmp_path / "demos" / "push-train.hdf5") as reader:
        assert len(reader.demos) == 3
    assert (tmp_path / "learning_curve.png").stat().st_size > 0
    assert (tmp_path / "adapt" / "task0_before_after.mp4").stat().st_size > 0
