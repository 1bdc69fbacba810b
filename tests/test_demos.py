"""Demo files: round trip, crash safety, replay, validation messages, robomimic loading, dataset, teleop, CLI.

Everything runs on the point family (thousands of steps per second).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from demos.cli import demos_main, summarize
from vision_gmps.collect import collect_main
from demos.collect import collect_scripted, select_tasks
from demos.dataset import DemoDataset
from demos.hdf5 import DemoFileError, DemoReader, DemoWriter, make_env_args, merge, validate
from demos.replay import replay_demo, write_video
from demos.teleop import ScriptedDevice, device_state_to_action, has_display, make_device, teleop_collect
from robot_envs import make_family

REPO = Path(__file__).resolve().parent.parent


def _collect(path: Path, tasks: int = 3, per_task: int = 2, noise: float = 0.0, seed: int = 0, split: str = "train"):
    family = make_family("point")
    written = {}
    stats = collect_scripted(family, select_tasks(family, split, tasks, 0), per_task, path, noise=noise, seed=seed,
                             progress=False, on_demo=lambda name, ep: written.__setitem__(name, ep))
    return stats, written


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demos") / "point.hdf5"
    _collect(path, tasks=3, per_task=4)
    return path


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


# ----------------------------------------------------------------------------- writing and reading


def test_round_trip_is_bit_exact(tmp_path):
    path = tmp_path / "rt.hdf5"
    stats, written = _collect(path, tasks=3, per_task=2, noise=0.3)
    assert stats.demos == 6 and list(written) == [f"demo_{i}" for i in range(6)]
    with DemoReader(path) as reader:
        assert reader.demos == list(written)
        for name, ep in written.items():
            back = reader.episode(name)
            for key in ("image", "proprio"):
                assert back.obs[key].dtype == ep.obs[key].dtype
                np.testing.assert_array_equal(back.obs[key], ep.obs[key])
            for attr in ("actions", "expert_actions", "rewards", "dones", "states"):
                a, b = getattr(back, attr), getattr(ep, attr)
                assert a.dtype == b.dtype and a.shape == b.shape, attr
                np.testing.assert_array_equal(a, b)
            assert (back.task, back.success, back.source, back.seed) == (ep.task, ep.success, "scripted", ep.seed)
            # With action noise the executed actions differ from the expert's labels.
            assert not np.array_equal(back.actions, back.expert_actions)
        g = reader.file["data/demo_0"]
        assert g["obs/scene_image"].dtype == np.uint8 and g["obs/scene_image"].chunks == (1, 32, 32, 3)
        assert g["obs/scene_image"].compression == "gzip"
        np.testing.assert_array_equal(g["next_obs/proprio"][:-1], g["obs/proprio"][1:])
        assert int(reader.file["data"].attrs["total"]) == 6 * 20
        assert reader.env_args["family"] == "point" and reader.env_args["image_size"] == [32, 32]
        assert reader.env_args["env_kwargs"]["goal_radius"] == 0.3
        assert set(reader.mask("train")) | set(reader.mask("valid")) == set(written)
    assert validate(path) == []


def test_append_to_existing_file_and_refuse_mismatched(tmp_path):
    path = tmp_path / "a.hdf5"
    _collect(path, tasks=2, per_task=3)
    _collect(path, tasks=1, per_task=2, split="test")
    with DemoReader(path) as reader:
        assert reader.demos == [f"demo_{i}" for i in range(8)]
        assert [reader.info(n).task.split for n in reader.demos] == ["train"] * 6 + ["test"] * 2
        assert reader.mask("valid") == []  # valid_every=10: none yet among 8
    assert validate(path) == []
    other = make_family("point", image_size=(16, 16))
    with pytest.raises(DemoFileError, match=r"a\.hdf5: cannot append: image_size"):
        DemoWriter(path, make_env_args(other, other.make_env()))


KILL_CHILD = textwrap.dedent(
    """
    import sys, time
    from demos.collect import collect_scripted, select_tasks
    from demos.scripted.point import PointExpert
    from robot_envs import make_family

    class Hangs(PointExpert):
        calls = 0
        def act(self, state):
            Hangs.calls += 1
            if Hangs.calls == 3 * 20 + 6:  # mid-way through the 4th episode
                print("MID_EPISODE", flush=True)
                time.sleep(120)
            return super().act(state)

    family = make_family("point")
    collect_scripted(family, select_tasks(family, "train", 2, 0), 5, sys.argv[1], progress=False, expert=Hangs(),
                     on_demo=lambda name, ep: print("WROTE", name, flush=True))
    """
)


def test_sigkill_mid_episode_leaves_a_valid_file(tmp_path):
    path = tmp_path / "killed.hdf5"
    proc = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("MID_EPISODE"):
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert lines == ["WROTE demo_0", "WROTE demo_1", "WROTE demo_2", "MID_EPISODE"]
    assert validate(path) == []
    with DemoReader(path) as reader:
        assert reader.demos == ["demo_0", "demo_1", "demo_2"]
        assert int(reader.file["data"].attrs["total"]) == 60
    assert demos_main(["validate", str(path)]) == 0
    _collect(path, tasks=1, per_task=1)  # appending after the crash continues the numbering
    with DemoReader(path) as reader:
        assert reader.demos[-1] == "demo_3"


# ----------------------------------------------------------------------------- replay


def test_replay_from_states_is_exact_and_actions_divergence_is_reported(demo_file, tmp_path):
    result, ep = replay_demo(demo_file, "demo_1", "both")
    assert result.mismatched_frames == 0 and result.max_pixel_diff == 0
    assert result.max_state_divergence == 0.0 and result.replayed_success == ep.success
    video = write_video(tmp_path / "r.mp4", ep, result)
    import imageio.v2 as imageio

    frames = imageio.mimread(video)
    assert len(frames) == ep.num_samples + 1 and frames[0].shape[1] > 2 * 32

    tampered = tmp_path / "tampered.hdf5"
    shutil.copy(demo_file, tampered)
    with h5py.File(tampered, "a") as f:
        f["data/demo_1/actions"][5] = -f["data/demo_1/actions"][5]
        f["data/demo_1/obs/scene_image"][3, 0, 0] = 0
    result, _ = replay_demo(tampered, "demo_1", "both")
    assert result.mismatched_frames == 1 and result.max_pixel_diff > 0
    assert result.max_state_divergence > 0.01
    assert demos_main(["replay", str(tampered), "--demo", "demo_1", "--mode", "states"]) == 1


# ----------------------------------------------------------------------------- bad input


def _break(kind: str, good: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    bad = tmp_path / f"{kind}.hdf5"
    if kind == "not_hdf5":
        bad.write_text("episode,action\n0,0.1\n")
        return bad, [str(bad), "not an HDF5 file"]
    shutil.copy(good, bad)
    if kind == "truncated":
        with open(bad, "r+b") as f:
            f.truncate(bad.stat().st_size // 2)
        return bad, [str(bad), "truncated or corrupted"]
    with h5py.File(bad, "a") as f:
        if kind == "missing_key":
            del f["data/demo_1/actions"]
            return bad, [str(bad), "demo_1", "'actions' is missing"]
        f["data/demo_2/actions"][12] = np.nan
        return bad, [str(bad), "demo_2", "actions contain NaN or inf at step 12", "--exclude demo_2"]


@pytest.mark.parametrize("kind", ["truncated", "missing_key", "not_hdf5", "nan_actions"])
def test_bad_files_get_clear_messages_and_are_not_modified(kind, demo_file, tmp_path, capsys):
    bad, expected = _break(kind, demo_file, tmp_path)
    before = _digest(bad)
    problems = validate(bad)
    assert problems, kind
    text = "\n".join(map(str, problems))
    for piece in expected:
        assert piece in text, (piece, text)
    assert demos_main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert expected[-1] in err
    if kind != "not_hdf5" and kind != "truncated":
        assert demos_main(["info", str(bad)]) == 0  # info still summarises what it can
    else:
        assert demos_main(["info", str(bad)]) == 1
    assert _digest(bad) == before


def test_merge_excludes_a_bad_demo(demo_file, tmp_path):
    bad, _ = _break("nan_actions", demo_file, tmp_path)
    with pytest.raises(DemoFileError, match="demo_2: actions contain NaN"):
        merge([bad], tmp_path / "m.hdf5")
    assert merge([bad, demo_file], tmp_path / "m.hdf5", exclude=[f"{bad}:demo_2"]) == 23
    assert validate(tmp_path / "m.hdf5") == []
    with pytest.raises(DemoFileError, match="must differ"):
        merge([demo_file], demo_file)


def test_reading_never_modifies_the_file(demo_file):
    before = _digest(demo_file)
    validate(demo_file)
    summarize(demo_file)
    DemoDataset(demo_file, memory_budget_bytes=0).sample("point/train/0", 4, np.random.default_rng(0))
    replay_demo(demo_file, "demo_0", "both")
    assert _digest(demo_file) == before


# ----------------------------------------------------------------------------- other readers


def test_robomimic_sequence_dataset_loads_the_file(demo_file):
    import robomimic.utils.obs_utils as ObsUtils
    from robomimic.utils.dataset import SequenceDataset

    ObsUtils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": ["proprio"], "rgb": ["scene_image"]}})
    ds = SequenceDataset(str(demo_file), obs_keys=("proprio", "scene_image"), dataset_keys=("actions", "rewards", "dones"),
                         hdf5_cache_mode="low_dim", filter_by_attribute="train")
    with DemoReader(demo_file) as reader:
        train = [n for n in reader.demos if n in reader.mask("train")]
        assert len(ds) == sum(reader.info(n).num_samples for n in train)
        first = reader.episode(train[0])
    item = ds[3]
    np.testing.assert_array_equal(item["actions"][0], first.actions[3])
    np.testing.assert_array_equal(item["obs"]["proprio"][0], first.obs["proprio"][3])
    assert item["obs"]["scene_image"].shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(item["obs"]["scene_image"][0], first.obs["image"][3])


# ----------------------------------------------------------------------------- training dataset


def test_dataset_in_memory_and_streaming_agree(demo_file):
    ram = DemoDataset(demo_file)
    disk = DemoDataset(demo_file, memory_budget_bytes=1000)
    assert ram.in_memory and not disk.in_memory
    assert ram.task_ids == ["point/train/0", "point/train/1", "point/train/2"]
    assert ram.num_samples("point/train/1") == 80
    for task_id in ram.task_ids:
        a = ram.sample(task_id, 32, np.random.default_rng(7))
        b = disk.sample(task_id, 32, np.random.default_rng(7))
        assert a["image"].dtype == np.uint8 and a["image"].shape == (32, 32, 32, 3)
        assert a["proprio"].dtype == np.float32 and a["action"].shape == (32, 2)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # Each row's action is the expert's action for that row's state and that task's goal.
    goal = np.array([ram.tasks["point/train/2"].params[k] for k in ("goal_x", "goal_y")])
    batch = ram.sample("point/train/2", 16, np.random.default_rng(1))
    expected = np.clip((goal - batch["proprio"]) / 0.1, -1, 1)
    np.testing.assert_allclose(batch["action"], expected, atol=1e-5)
    with pytest.raises(DemoFileError, match=r"has image size 32x32, config says 48x64"):
        ram.check_compatible("point", (48, 64))
    with pytest.raises(DemoFileError, match=r"holds family 'point', config says 'push'"):
        ram.check_compatible("push", (32, 32))
    with pytest.raises(KeyError, match="no demos for task"):
        ram.sample("point/test/0", 2, np.random.default_rng(0))
    assert DemoDataset(demo_file, filter_key="valid").num_samples("point/train/2") == 20
    family = make_family("point")
    assert ram.find(family.sample("train", 3, seed=0)[1]) == "point/train/1"
    assert ram.find(family.sample("test", 1, seed=0)[0]) is None
    with pytest.raises(DemoFileError, match=r"point/train/1 with .* another task seed"):
        ram.find(family.sample("train", 3, seed=5)[1])


# ----------------------------------------------------------------------------- teleop


def test_device_state_to_action_mapping():
    up = {"dpos": np.array([-0.05, 0.0, 0.0]), "grasp": 1}
    np.testing.assert_allclose(device_state_to_action(up, 2, "point"), [0.0, 1.0])  # up arrow: +y on screen
    right = {"dpos": np.array([0.0, 0.02, 0.0])}
    np.testing.assert_allclose(device_state_to_action(right, 2, "point"), [0.4, 0.0])
    np.testing.assert_allclose(device_state_to_action(up, 4, "push"), [-1.0, 0.0, 0.0, 1.0])
    assert device_state_to_action({"dpos": np.zeros(3)}, 7, "door").shape == (7,)
    with pytest.raises(ValueError, match="5-d action"):
        device_state_to_action(up, 5, "door")


def _steer_to(goal: np.ndarray, steps: int) -> list[dict]:
    """Keyboard-like readings (0.05 per press) that walk the point from the origin to ``goal``."""
    out, pos = [], np.zeros(2)
    for _ in range(steps):
        move = np.clip(goal - pos, -0.1, 0.1)
        pos = pos + move
        out.append({"dpos": np.array([-move[1] / 2, move[0] / 2, 0.0])})  # screen (x, y) -> keyboard (dpos1, -dpos0)
    return out


def test_teleop_loop_headless_keep_discard_and_reset(tmp_path):
    family = make_family("point")
    task = select_tasks(family, "train", 1, 0)[0]
    goal = np.array([task.params["goal_x"], task.params["goal_y"]])
    readings = _steer_to(goal, 20) + [{"reset": 1}] + [{}] * 20 + _steer_to(goal, 20)
    device = ScriptedDevice(readings)
    decisions = iter(["keep", "discard", "keep"])
    said: list[str] = []
    stats = teleop_collect(family, [task], device, tmp_path / "t.hdf5", 2, "keyboard",
                           decide=lambda ep: next(decisions), say=said.append)
    assert stats.kept == ["demo_0", "demo_1"] and stats.discarded == 1 and stats.aborted == 1
    assert device.started == 4
    assert any("goal_x=" in s and task.task_id in s for s in said)  # the hidden parameter is shown
    with DemoReader(tmp_path / "t.hdf5") as reader:
        infos = [reader.info(n) for n in reader.demos]
    assert [i.source for i in infos] == ["keyboard", "keyboard"] and all(i.success for i in infos)
    assert validate(tmp_path / "t.hdf5") == []


@pytest.mark.skipif(has_display(), reason="checks the headless error message")
def test_keyboard_without_display_says_why():
    with pytest.raises(RuntimeError, match="keyboard device.*display"):
        make_device("keyboard")


# ----------------------------------------------------------------------------- CLI


def test_cli_collect_info_validate_replay(tmp_path, capsys):
    out = tmp_path / "cli.hdf5"
    assert collect_main(["num_tasks=2", "demos_per_task=3", "split=test", f"output={out}", "progress=false"]) == 0
    assert "wrote 6 scripted demos for 2 test tasks of point" in capsys.readouterr().out
    assert demos_main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "6 demos, 120 samples, success 6/6 (100%)" in text and "point/test/1" in text
    assert demos_main(["validate", str(out)]) == 0
    assert demos_main(["replay", str(out), "--demo", "demo_4", "--video", str(tmp_path / "v.mp4")]) == 0
    assert "20/20 frames identical" in capsys.readouterr().out and (tmp_path / "v.mp4").stat().st_size > 0
    assert demos_main(["merge", str(tmp_path / "m.hdf5"), str(out), "--exclude", "demo_0"]) == 0
    assert summarize(tmp_path / "m.hdf5")["demos"] == 5
    assert collect_main(["no_such_key=1"]) == 2
    assert demos_main(["info", str(tmp_path / "missing.hdf5")]) == 1
    assert "missing.hdf5: no such file" in capsys.readouterr().err


@pytest.mark.skipif(has_display(), reason="checks the headless error path")
def test_cli_keyboard_teleop_without_display_fails_clearly(tmp_path, capsys):
    assert collect_main(["source=keyboard", f"output={tmp_path / 't.hdf5'}"]) == 1
    assert "keyboard device" in capsys.readouterr().err
    assert not (tmp_path / "t.hdf5").exists()
