"""Nothing a user already has is lost or silently mixed, and every wrong input gets one clear line.

One test per case of issue 10 (and issue 14, item 7): each failed on the code before it.
Everything runs on the point family at toy size.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from demos.cli import demos_main
from vision_gmps.collect import collect_main
from demos.collect import collect_scripted, select_tasks
from demos.hdf5 import DemoFileError, DemoReader, format_problems, merge, validate
from robot_envs import make_family
from robot_envs.errors import UserError
from tests.test_training import TINY, _cfg
from vision_gmps.adapt import adapt
from vision_gmps.checkpoint import CheckpointError
from vision_gmps.checks import check_settings
from vision_gmps.cli import main
from vision_gmps.config import ConfigError, load_config
from vision_gmps.train import train

REPO = Path(__file__).resolve().parent.parent


def _digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``: 'byte-identical' means this dict is unchanged."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _demos(path: Path, tasks: int = 2, per_task: int = 2, seed: int = 0) -> Path:
    family = make_family("point")
    collect_scripted(family, select_tasks(family, "train", tasks, 0), per_task, path, seed=seed, progress=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 2-iteration GMPS run whose stored experiment says adapt.num_tasks=2 and sampler.num_envs=3."""
    run = tmp_path_factory.mktemp("trained")
    train(_cfg(run, "train.iterations=2", "adapt.num_tasks=2", "adapt.steps=1", "adapt.rollouts_per_task=2",
               "sampler.num_envs=3"))
    return run


# ----------------------------------------------------------------------------- nothing overwritten or mixed


def test_merge_train_and_collect_leave_an_existing_file_byte_identical_unless_forced(tmp_path, capsys):
    # merge: an existing OUT is refused; --force replaces it
    a, b = _demos(tmp_path / "a.hdf5", tasks=2), _demos(tmp_path / "b.hdf5", tasks=1)
    out = _demos(tmp_path / "out.hdf5", tasks=3, per_task=3)
    before = _digests(tmp_path)
    with pytest.raises(DemoFileError, match="out.hdf5 already exists; pass --force"):
        merge([a, b], out)
    assert demos_main(["merge", str(out), str(a), str(b)]) == 1
    assert _digests(tmp_path) == before
    assert demos_main(["merge", str(out), str(a), str(b), "--force"]) == 0
    with DemoReader(out) as reader:
        assert len(reader.demos) == 6

    # collect: an existing output is refused; append=true adds to it
    before = _digests(tmp_path)
    assert collect_main([f"output={a}", "num_tasks=2", "demos_per_task=1", "progress=false"]) == 1
    assert "a.hdf5 already exists (4 demos); add append=true" in capsys.readouterr().err
    assert _digests(tmp_path) == before

    # train: a run folder holding another run is refused; force=true starts afresh
    run = tmp_path / "run"
    train(_cfg(run, "train.iterations=2"))
    before = _digests(run)
    with pytest.raises(UserError, match="already holds a run .*resume=true.*--force"):
        train(_cfg(run, "train.iterations=1"))
    assert _digests(run) == before
    train(_cfg(run, "train.iterations=1", "force=true"))
    steps = [json.loads(line)["step"] for line in (run / "train_metrics.jsonl").read_text().splitlines()]
    assert steps == [1] and sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == ["iter_00001.pt", "last.pt"]


def test_collect_append_says_so_and_records_new_episodes(tmp_path, capsys):
    out = tmp_path / "d.hdf5"
    args = [f"output={out}", "num_tasks=2", "demos_per_task=2", "progress=false"]
    assert collect_main(args) == 0
    assert collect_main([*args, "append=true"]) == 0
    text = capsys.readouterr().out
    assert "appending to" in text and "already holds 4 demos" in text and "appended 4 new scripted demos" in text
    assert main(["collect", *args, "--append"]) == 0  # the CLI flag
    with DemoReader(out) as reader:
        seeds = [int(reader.file["data"][n].attrs["seed"]) for n in reader.demos]
        actions = [reader.episode(n).actions.tobytes() for n in reader.demos]
    assert len(seeds) == 12 and len(set(seeds)) == 12, "every demo has its own reset seed"
    assert len(set(actions)) == 12, "no demo is a copy of another"
    assert validate(out) == []


# ----------------------------------------------------------------------------- demo validation


def _damage(path: Path) -> None:
    with h5py.File(path, "a") as f:
        f["data/demo_0/expert_actions"][3] = np.nan
        f["data/demo_0/rewards"][1] = np.inf
        f["data/demo_0/dones"][0] = 7
        f["data/demo_1"].attrs["task"] = "{not json"
        f["data/demo_2"].attrs["num_samples"] = "many"
        del f["data/demo_3/next_obs/proprio"]
        f["data/demo_3"].create_dataset("next_obs/proprio", data=np.zeros((20, 5), np.float32))


def test_validate_checks_every_array_and_survives_damaged_metadata(tmp_path, capsys):
    path = _damage_copy = _demos(tmp_path / "bad.hdf5", tasks=2, per_task=2)
    _damage(_damage_copy)
    problems = validate(path)
    by_demo: dict[str, list[str]] = {}
    for p in problems:
        by_demo.setdefault(p.demo, []).append(p.message)
    assert any("expert_actions contain NaN or inf at step 3" in m for m in by_demo["demo_0"])
    assert any("rewards contains NaN or inf at step 1" in m for m in by_demo["demo_0"])
    assert any("dones has values outside {0, 1}" in m for m in by_demo["demo_0"])
    assert any("task attribute is not a valid task" in m for m in by_demo["demo_1"])
    assert any("num_samples is 'many'" in m for m in by_demo["demo_2"])
    assert any("'next_obs/proprio' rows have shape (5,), expected (2,)" in m for m in by_demo["demo_3"])
    assert all(p.fix.endswith(f"--exclude {p.demo}`") for p in problems if p.demo)
    assert demos_main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "demo_0: 3 problems:" in err and err.count("fix: re-collect it or drop it") == 1


def test_training_refuses_nan_expert_actions_before_any_rollout(tmp_path, monkeypatch):
    path = _demos(tmp_path / "nan.hdf5", tasks=3, per_task=2)
    with h5py.File(path, "a") as f:
        f["data/demo_4/expert_actions"][5] = np.nan

    def no_rollouts(*_a, **_k):
        raise AssertionError("a rollout was collected before the demo check")

    monkeypatch.setattr("vision_gmps.rollouts.Sampler.collect", no_rollouts)
    with pytest.raises(UserError, match=r"(?s)nan.hdf5 \(algo.expert.demo_files\) has problems.*demo_4: "
                                        r"expert_actions contain NaN or inf at step 5.*--exclude demo_4"):
        train(_cfg(tmp_path / "run", "train.iterations=1", "algo.expert.source=demos", f"algo.expert.demo_files=[{path}]",
                   "algo.dagger.enabled=false"))
    assert not (tmp_path / "run" / "checkpoints").exists()


LOCK_HOLDER = """
import sys, time, h5py
f = h5py.File(sys.argv[1], "a")
print("LOCKED", flush=True)
time.sleep(60)
"""


def test_a_file_locked_by_another_process_is_reported_as_locked(tmp_path):
    path = _demos(tmp_path / "busy.hdf5", tasks=1, per_task=1)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        text = format_problems(validate(path))
        assert "locked by another process" in text and "corrupted" not in text
        with pytest.raises(DemoFileError, match="locked by another process.*wait for it to finish"):
            _demos(path, tasks=1, per_task=1, seed=1)
    finally:
        holder.kill()
        holder.wait(timeout=10)


# ----------------------------------------------------------------------------- adapt


def test_adapt_takes_a_positional_checkpoint_and_the_documented_keys(trained, tmp_path, capsys):
    ckpt = trained / "checkpoints" / "last.pt"
    common = ["wandb.mode=disabled", "adapt.steps=1", "adapt.rollouts_per_task=2"]
    assert main(["adapt", str(ckpt), *common, f"run_dir={tmp_path / 'a'}"]) == 0
    assert main(["adapt", f"adapt.checkpoint={ckpt}", *common, f"run_dir={tmp_path / 'b'}"]) == 0
    assert main(["adapt", f"checkpoint={ckpt}", *common, f"run_dir={tmp_path / 'c'}"]) == 0
    for name in "abc":
        assert (tmp_path / name / "adapt_results.md").is_file()
    assert main(["adapt"]) == 2
    assert "vgmps adapt: error: vgmps adapt needs a checkpoint: vgmps adapt runs/" in capsys.readouterr().err


def test_adapt_layers_the_command_line_onto_the_checkpoints_experiment(trained, tmp_path, caplog):
    ckpt = trained / "checkpoints" / "last.pt"
    caplog.set_level("INFO", logger="vision_gmps")
    argv = [str(ckpt), "wandb.mode=disabled", "env.kwargs.goal_radius=0.5", "adapt.steps=2", f"run_dir={tmp_path}"]
    from vision_gmps.adapt_setup import adapt_argv

    argv = adapt_argv(argv)
    results = adapt(load_config(argv), overrides=argv)
    used = OmegaConf.load(tmp_path / "adapt_config.yaml")
    # env: the checkpoint's (16x16, horizon 8, 3 train tasks) with the one override on top
    assert list(used.env.kwargs.image_size) == [16, 16] and used.env.kwargs.horizon == 8 and used.env.tasks.train == 3
    assert used.env.kwargs.goal_radius == 0.5
    # adapt and sampler: the stored experiment's, except what the command line names
    assert (used.adapt.num_tasks, used.adapt.rollouts_per_task, used.adapt.steps) == (2, 2, 2)
    assert used.sampler.num_envs == 3
    assert results["learned"].rows[-1]["episodes"] == 2 * 2 * 2
    log = caplog.text
    assert "adapt.num_tasks=2 " in log and "adapt.steps=2*" in log and "sampler.num_envs=3" in log
    assert "layered onto the checkpoint's env/algo: env.kwargs.goal_radius=0.5" in log


@pytest.mark.parametrize("override, named", [
    ("env.kwargs.image_size=[20,20]", "image size: checkpoint 16x16, env 20x20"),
    ("env.kwargs.horizon=12", "horizon: checkpoint 8, env 12"),
    ("env=push", "family: checkpoint point, settings push"),
])
def test_adapt_refuses_an_env_that_does_not_fit_before_writing_anything(trained, tmp_path, monkeypatch, override, named):
    monkeypatch.setattr("vision_gmps.rollouts.Sampler.collect", lambda *a, **k: pytest.fail("rollout before the check"))
    argv = [f"adapt.checkpoint={trained / 'checkpoints' / 'last.pt'}", "wandb.mode=disabled", override,
            f"run_dir={tmp_path / 'out'}"]
    with pytest.raises(CheckpointError, match=named):
        adapt(load_config(argv), overrides=argv)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- resume


def test_resume_refuses_a_changed_experiment_naming_the_keys(trained, tmp_path):
    before = _digests(trained)
    with pytest.raises(CheckpointError, match=r"experiment differs.*env.tasks.train: checkpoint 3, now 4; "
                                              r"algo.outer_lr: checkpoint 0.001, now 0.01"):
        train(_cfg(trained, "train.iterations=3", "resume=true", "algo.outer_lr=0.01", "env.tasks.train=4",
                   "adapt.num_tasks=2", "adapt.steps=1", "adapt.rollouts_per_task=2", "sampler.num_envs=3"))
    assert _digests(trained) == before


def test_damaged_last_pt_falls_back_only_on_request_and_continues_exactly(tmp_path):
    straight = train(_cfg(tmp_path / "straight", "train.iterations=3"))
    run = tmp_path / "run"
    train(_cfg(run, "train.iterations=2"))
    (run / "checkpoints" / "last.pt").write_bytes(b"damaged")
    (run / "checkpoints" / "iter_00002.pt").write_bytes(b"damaged too")
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*earlier checkpoints exist \(iter_00002.pt, "
                                              r"iter_00001.pt\); add resume_fallback=true"):
        train(_cfg(run, "train.iterations=3", "resume=true"))
    resumed = train(_cfg(run, "train.iterations=3", "resume=true", "resume_fallback=true"))
    assert resumed.env_episodes == straight.env_episodes  # the expert buffer came back: nothing re-collected
    for name, tensor in straight.policy.state_dict().items():
        torch.testing.assert_close(resumed.policy.state_dict()[name], tensor, rtol=1e-5, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (run / "train_metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3], "metrics of the iteration lost with iter_00002.pt are not repeated"


# ----------------------------------------------------------------------------- help, errors, typos, settings


@pytest.mark.parametrize("sub, key", [("train", "train.checkpoint_every="), ("adapt", "adapt.num_tasks="),
                                      ("demo", "demo.demos_per_task="), ("collect", "demos_per_task="),
                                      ("demos", "merge"), ("envs", "show")])
def test_every_subcommand_answers_help_with_its_keys_and_an_example(sub, key, capsys):
    assert main([sub, "--help"]) == 0
    out = capsys.readouterr().out
    assert key in out and "example" in out and f"vgmps {sub}" in out


def test_errors_are_one_line_and_vgmps_debug_shows_the_traceback(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("VGMPS_DEBUG", raising=False)
    assert main(["train", "train.checkpoint_every=0", f"run_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert err == "vgmps train: error: train.checkpoint_every=0: must be an integer >= 1 (iterations between checkpoints)\n"
    assert not (tmp_path / "r").exists()
    assert main(["adapt", str(tmp_path / "missing.pt")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    monkeypatch.setenv("VGMPS_DEBUG", "1")
    with pytest.raises(ConfigError, match="checkpoint_every"):
        main(["train", "train.checkpoint_every=0"])


@pytest.mark.parametrize("override, message", [
    ("algo.inner_lrr=0.5", "algo.inner_lrr is not a config key; did you mean algo.inner_lr?"),
    ("+algo.inner_lrr=0.5", "algo.inner_lrr is not a config key; did you mean algo.inner_lr?"),
    ("env=pointt", "env=pointt: no such option; did you mean point?"),
    ("trian.iterations=3", "trian.iterations is not a config key; did you mean train.iterations?"),
])
def test_a_config_typo_names_the_closest_key_not_a_plus_hint(override, message):
    with pytest.raises(ConfigError) as err:
        load_config([override])
    assert message in str(err.value) and "+algo" not in str(err.value)


@pytest.mark.parametrize("override, job, named", [
    ("train.checkpoint_every=0", "train", "train.checkpoint_every=0: must be an integer >= 1"),
    ("train.iterations=-3", "train", "train.iterations=-3"),
    ("algo.rollouts_per_task=0", "train", "algo.rollouts_per_task=0"),
    ("algo.outer_lr=0", "train", "algo.outer_lr=0: must be a number > 0"),
    ("algo.gamma=1.5", "train", "algo.gamma=1.5: must be a number > 0.0 and <= 1.0"),
    ("sampler.num_envs=0", "train", "sampler.num_envs=0"),
    ("train.iterations=abc", "train", "train.iterations=abc: must be an integer"),
    ("algo.meta_batch_size=30", "train", "algo.meta_batch_size=30: must be null (all training tasks) or 1..20, the tasks of env.tasks.train=20; lower it or raise env.tasks.train"),
    ("train.eval_tasks=0", "train", "train.eval_tasks=0: must be >= 1 (valid-split tasks)"),
    ("adapt.split=validation", "adapt", "adapt.split=validation: must be one of train, test, valid"),
    ("adapt.num_tasks=11", "adapt", "adapt.num_tasks=11: the test split has 10 tasks"),
    ("adapt.step_size=best", "adapt", "adapt.step_size=best: must be one of learned, fixed, both"),
    ("env.kwargs.image_size=[0,32]", "train", "env.kwargs.image_size=[0, 32]"),
    ("adapt.control=flase", "adapt", "adapt.control=flase: must be true or false"),
    ("adapt.shrink_steps=1", "demo", "adapt.shrink_steps=1: must be true or false"),
    ("algo.first_order=yes", "train", "algo.first_order=yes: must be true or false"),
])
def test_every_numeric_setting_is_checked_with_the_key_named(override, job, named):
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        check_settings(load_config([override]), job)


def test_settings_are_checked_before_any_work_and_shipped_configs_pass(tmp_path, capsys):
    for name, overrides in [("config", []), ("config", ["+experiment=push_cpu"]), ("config", ["+experiment=door_gmps"]),
                            ("config", ["adapt.split=valid", "adapt.num_tasks=50", "train.eval_tasks=50"]),
                            ("demo", []), ("demo", ["experiment=door_cpu"])]:
        for job in ("train", "adapt", "demo"):
            check_settings(load_config(overrides, config_name=name), job)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="train.checkpoint_every=0"):
        train(_cfg(tmp_path / "r", "train.checkpoint_every=0"))
    assert time.perf_counter() - start < 1.0 and not (tmp_path / "r").exists()
    assert collect_main([f"output={tmp_path / 'c.hdf5'}", "num_tasks=25", "demos_per_task=0"]) == 1
    err = capsys.readouterr().err
    assert "demos_per_task=0: must be an integer >= 1" in err and "num_tasks=25: must be 1..20" in err
    assert not (tmp_path / "c.hdf5").exists()


def test_natural_step_and_shrunk_steps_are_refused_together():
    """adapt.step_size=natural replaces the gradient step that adapt.shrink_steps shortens: one or the other."""
    with pytest.raises(ConfigError, match="adapt.shrink_steps=true shortens the gradient step"):
        check_settings(load_config(["adapt.step_size=natural", "adapt.shrink_steps=true"]), "adapt")
    with pytest.raises(ConfigError, match="adapt.natural_step_scale=0: must be a number > 0"):
        check_settings(load_config(["adapt.step_size=natural", "adapt.natural_step_scale=0"]), "adapt")
    with pytest.raises(ConfigError, match="policy.latent_log_std is set"):  # refused before training, not at its first check
        check_settings(load_config(["adapt.step_size=natural", "policy.latent_log_std=0"]), "train")
    check_settings(load_config(["adapt.step_size=natural"]), "adapt")
    with pytest.raises(ConfigError, match="algo.inner_step=natural .* set adapt.step_size=natural"):
        check_settings(load_config(["algo.inner_step=natural", "adapt.step_size=learned"]), "train")
    with pytest.raises(ConfigError, match="algo.inner_step=natral: must be one of gradient, natural"):
        check_settings(load_config(["algo.inner_step=natral"]), "train")
    check_settings(load_config(["algo.inner_step=natural", "adapt.step_size=natural"]), "train")
