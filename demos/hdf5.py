"""Demonstration files in robomimic's HDF5 layout: write, read, validate, merge.

Layout (what robomimic's ``SequenceDataset`` and our ``DemoDataset`` read)::

    /data                   attrs: total (sum of num_samples), env_args (JSON)
    /data/demo_<n>          attrs: num_samples, task (Task JSON), task_id, success,
                                   source, model_file (MJCF xml, "" for point), seed
        obs/<key>           [T, ...]   obs/<camera>_image uint8 [T,H,W,3], obs/proprio float32 [T,P]
        next_obs/<key>      [T, ...]   the observation after each action
        actions             [T, A] float32   (what was executed)
        expert_actions      [T, A] float32   (scripted sources: the noise-free expert label)
        rewards [T] float64, dones [T] int64, states [T, S] float64 (sim state at obs t)
    /mask/train, /mask/valid  demo names (bytes)

Crash safety: an episode is kept in memory until it ends, then ``DemoWriter.append``
opens the file, writes the whole demo, sets ``num_samples`` (the completion mark),
updates the masks and ``total`` last, flushes, fsyncs and closes. A process killed
mid-episode therefore never has the file open. SIGINT/SIGTERM arriving during the
write are held until it finishes. SIGKILL or power loss *during* the write itself
(milliseconds per demo) can still damage the file: HDF5 has no journal.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from robot_envs.base import Task
from robot_envs.errors import UserError

PROPRIO_KEY = "proprio"
DEFAULT_CAMERA = "scene"
# robomimic's EnvType has 1 = robosuite, 2 = gym, 3 = iGibson; 100 marks a vgmps task
# family, rebuilt with robot_envs.make_family(env_args["family"], **env_args["env_kwargs"]).
VGMPS_ENV_TYPE = 100
REQUIRED_ENV_ARGS = ("env_name", "type", "env_kwargs", "family", "camera", "image_size", "obs_keys")
DEMO_RE = re.compile(r"^demo_(\d+)$")
IMAGE_COMPRESSION = {"compression": "gzip", "compression_opts": 4}


class DemoFileError(UserError):
    """A demo file that cannot be used; the message names the file, the demo and the problem."""


@dataclass
class Episode:
    """One demonstration in memory. ``obs`` arrays have T+1 rows (the final observation included)."""

    task: Task
    obs: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    states: np.ndarray
    success: bool
    source: str
    model_xml: str = ""
    expert_actions: np.ndarray | None = None
    seed: int | None = None
    # Extra per-demo metadata (e.g. a deployment's reward provenance, safety events, interruption):
    # ``attrs`` (str/number/bool) become demo attributes, ``arrays`` datasets under ``extra/``.
    attrs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return int(len(self.actions))


@dataclass
class EpisodeRecorder:
    """Accumulates one episode step by step; nothing touches the disk until ``finish``."""

    task: Task
    source: str
    seed: int | None = None
    _obs: list[dict[str, np.ndarray]] = field(default_factory=list)
    _states: list[np.ndarray] = field(default_factory=list)
    _actions: list[np.ndarray] = field(default_factory=list)
    _expert: list[np.ndarray] = field(default_factory=list)
    _rewards: list[float] = field(default_factory=list)
    _dones: list[bool] = field(default_factory=list)
    _success: bool = False

    def start(self, obs: dict[str, np.ndarray], sim_state: np.ndarray) -> None:
        self._obs.append({k: np.array(v, copy=True) for k, v in obs.items()})
        self._states.append(np.asarray(sim_state, dtype=np.float64).ravel().copy())

    def step(
        self,
        action: np.ndarray,
        obs: dict[str, np.ndarray],
        reward: float,
        done: bool,
        info: dict[str, Any],
        sim_state: np.ndarray,
        expert_action: np.ndarray | None = None,
    ) -> None:
        self._actions.append(np.asarray(action, dtype=np.float32).copy())
        if expert_action is not None:
            self._expert.append(np.asarray(expert_action, dtype=np.float32).copy())
        self._rewards.append(float(reward))
        self._dones.append(bool(done))
        self._success = bool(info["success"])
        self._obs.append({k: np.array(v, copy=True) for k, v in obs.items()})
        self._states.append(np.asarray(sim_state, dtype=np.float64).ravel().copy())

    def finish(self, model_xml: str = "") -> Episode:
        if not self._actions:
            raise ValueError("cannot finish an episode with no steps")
        return Episode(
            task=self.task,
            obs={k: np.stack([o[k] for o in self._obs]) for k in self._obs[0]},
            actions=np.stack(self._actions),
            rewards=np.asarray(self._rewards, dtype=np.float64),
            dones=np.asarray(self._dones, dtype=np.int64),
            # robomimic stores the state at each observation that an action is taken from.
            states=np.stack(self._states[:-1]),
            success=self._success,
            source=self.source,
            model_xml=model_xml,
            expert_actions=np.stack(self._expert) if self._expert else None,
            seed=self.seed,
        )


def make_env_args(family: Any, env: Any) -> dict[str, Any]:
    """The ``data.attrs["env_args"]`` dict: robomimic's fields plus what vgmps needs to rebuild the env."""
    fargs = dict(family.env_args())
    camera = str(fargs.get("camera") or fargs.get("camera_name") or DEFAULT_CAMERA)
    image_shape = env.observation_space["image"].shape
    return {
        "env_name": str(fargs.get("env_name", family.name)),
        "type": int(fargs.get("type", VGMPS_ENV_TYPE)),
        "env_kwargs": {k: v for k, v in fargs.items() if k not in ("family", "env_name", "type")},
        "family": family.name,
        "camera": camera,
        "image_size": [int(image_shape[0]), int(image_shape[1])],
        "horizon": int(family.horizon),
        "action_dim": int(env.action_space.shape[0]),
        "proprio_dim": int(env.observation_space["proprio"].shape[0]),
        "obs_keys": {"image": f"{camera}_image", "proprio": PROPRIO_KEY},
    }


def demo_sort_key(name: str) -> int:
    match = DEMO_RE.match(name)
    return int(match.group(1)) if match else -1


@contextlib.contextmanager
def _hold_signals() -> Iterator[None]:
    """Delay SIGINT/SIGTERM until the block ends, so Ctrl-C never lands inside an HDF5 write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, _f: received.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in received:
            os.kill(os.getpid(), sig)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_mask(f: h5py.File, name: str, demos: list[str]) -> None:
    key = f"mask/{name}"
    if key in f:
        del f[key]
    f.create_dataset(key, data=np.array(sorted(demos, key=demo_sort_key), dtype="S"))


def read_mask(f: h5py.File, name: str) -> list[str]:
    key = f"mask/{name}"
    return [x.decode() for x in f[key][()]] if key in f else []


def _compatible(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    for key in ("family", "image_size", "obs_keys", "env_kwargs"):
        if a.get(key) != b.get(key):
            return f"{key} differs: file has {a.get(key)!r}, new data has {b.get(key)!r}"
    return None


class DemoWriter:
    """Appends finished episodes to a robomimic-layout file, one open/write/close per demo.

    ``valid_every=k`` puts every k-th demo into ``mask/valid`` (0: none); the rest go to ``mask/train``.
    Appending to an existing file requires the same family, image size, obs keys and env kwargs.
    """

    def __init__(self, path: str | os.PathLike, env_args: dict[str, Any], valid_every: int = 10) -> None:
        self.path = Path(path)
        self.env_args = env_args
        self.valid_every = int(valid_every)
        if self.path.exists():
            with open_demo_file(self.path) as f:
                existing = read_env_args(f, self.path)
            problem = _compatible(existing, env_args)
            if problem:
                raise DemoFileError(f"{self.path}: cannot append: {problem}")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".creating")
            with h5py.File(tmp, "w") as f:
                data = f.create_group("data")
                data.attrs["total"] = 0
                data.attrs["env_args"] = json.dumps(env_args)
                _write_mask(f, "train", [])
                _write_mask(f, "valid", [])
            os.replace(tmp, self.path)  # the file appears complete or not at all

    def append(self, episode: Episode) -> str:
        """Write one finished episode; returns its demo name. The file is closed again on return."""
        self._check(episode)
        keys = self.env_args["obs_keys"]
        with _hold_signals():
            with open_h5(self.path, "a") as f:
                data = f["data"]
                index = 1 + max((demo_sort_key(n) for n in data.keys()), default=-1)
                name = f"demo_{index}"
                g = data.create_group(name)
                for env_key, file_key in keys.items():
                    arr = episode.obs[env_key]
                    for group, rows in (("obs", arr[:-1]), ("next_obs", arr[1:])):
                        if env_key == "image":
                            g.create_dataset(f"{group}/{file_key}", data=rows, chunks=(1, *rows.shape[1:]), **IMAGE_COMPRESSION)
                        else:
                            g.create_dataset(f"{group}/{file_key}", data=rows)
                g.create_dataset("actions", data=episode.actions.astype(np.float32))
                if episode.expert_actions is not None:
                    g.create_dataset("expert_actions", data=episode.expert_actions.astype(np.float32))
                g.create_dataset("rewards", data=episode.rewards.astype(np.float64))
                g.create_dataset("dones", data=episode.dones.astype(np.int64))
                g.create_dataset("states", data=episode.states.astype(np.float64))
                g.attrs["task"] = episode.task.to_json()
                g.attrs["task_id"] = episode.task.task_id
                g.attrs["success"] = bool(episode.success)
                g.attrs["source"] = episode.source
                g.attrs["model_file"] = episode.model_xml
                g.attrs["seed"] = -1 if episode.seed is None else int(episode.seed)
                for key, value in episode.attrs.items():
                    g.attrs[key] = value
                for key, arr in episode.arrays.items():
                    g.create_dataset(f"extra/{key}", data=arr)
                g.attrs["num_samples"] = episode.num_samples  # written last among demo attrs: completion mark
                valid = self.valid_every > 0 and index % self.valid_every == self.valid_every - 1
                mask = "valid" if valid else "train"
                _write_mask(f, mask, read_mask(f, mask) + [name])
                data.attrs["total"] = int(data.attrs.get("total", 0)) + episode.num_samples
                f.flush()
            _fsync(self.path)
        return name

    def _check(self, ep: Episode) -> None:
        T = ep.num_samples
        h, w = self.env_args["image_size"]
        if ep.obs["image"].shape != (T + 1, h, w, 3) or ep.obs["image"].dtype != np.uint8:
            raise ValueError(f"episode images must be uint8 [{T + 1},{h},{w},3], got {ep.obs['image'].dtype} {ep.obs['image'].shape}")
        for name, arr in (("rewards", ep.rewards), ("dones", ep.dones), ("states", ep.states), ("proprio", ep.obs["proprio"][1:])):
            if len(arr) != T:
                raise ValueError(f"episode {name} has {len(arr)} rows, actions have {T}")
        if not np.all(np.isfinite(ep.actions)):
            raise ValueError("episode actions contain NaN or inf; not writing it")


# ----------------------------------------------------------------------------- reading


def open_h5(path: Path, mode: str) -> h5py.File:
    """``h5py.File``, with a file locked by another process reported as locked, not as corrupted."""
    try:
        return h5py.File(path, mode)
    except OSError as err:
        if getattr(err, "errno", None) == 11 or "unable to lock file" in str(err):
            raise DemoFileError(
                f"{path}: locked by another process (a running collect or training, or an open h5py/HDFView); "
                f"wait for it to finish or close it, then retry"
            ) from err
        raise DemoFileError(f"{path}: HDF5 file cannot be opened, likely truncated or corrupted: {err}") from err


@contextlib.contextmanager
def open_demo_file(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open read-only, turning h5py's errors into messages that name the file and the likely cause."""
    path = Path(path)
    if not path.exists():
        raise DemoFileError(f"{path}: no such file")
    if path.is_dir():
        raise DemoFileError(f"{path}: is a folder, expected an HDF5 demo file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as err:
        raise DemoFileError(f"{path}: cannot be read: {err}") from err
    if not is_hdf5:
        raise DemoFileError(f"{path}: not an HDF5 file (no HDF5 signature); is this the right path?")
    f = open_h5(path, "r")
    try:
        yield f
    finally:
        f.close()


def read_env_args(f: h5py.File, path: str | os.PathLike) -> dict[str, Any]:
    if "data" not in f:
        raise DemoFileError(f"{path}: no 'data' group; not a robomimic-layout demo file")
    raw = f["data"].attrs.get("env_args")
    if raw is None:
        raise DemoFileError(f"{path}: data has no 'env_args' attribute")
    try:
        args = json.loads(raw)
    except (TypeError, json.JSONDecodeError) as err:
        raise DemoFileError(f"{path}: data.attrs['env_args'] is not valid JSON: {err}") from err
    missing = [k for k in REQUIRED_ENV_ARGS if k not in args]
    if missing:
        raise DemoFileError(f"{path}: env_args lacks {missing}")
    return args


_CORE_ATTRS = {"num_samples", "task", "task_id", "success", "source", "model_file", "seed"}


def _read_extra(g: h5py.Group) -> dict[str, np.ndarray]:
    if "extra" not in g:
        return {}
    out: dict[str, np.ndarray] = {}
    g["extra"].visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _attr_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class DemoInfo:
    name: str
    task: Task
    num_samples: int
    success: bool
    source: str


class DemoReader:
    """Read-only access to a demo file: ``with DemoReader(path) as r: r.episode("demo_0")``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._ctx = open_demo_file(self.path)
        self.file = self._ctx.__enter__()
        try:
            self.env_args = read_env_args(self.file, self.path)
        except DemoFileError:
            self.close()
            raise

    def close(self) -> None:
        self._ctx.__exit__(None, None, None)

    def __enter__(self) -> "DemoReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def demos(self) -> list[str]:
        """Complete demos (with ``num_samples``), in index order."""
        data = self.file["data"]
        names = [n for n in data.keys() if DEMO_RE.match(n) and "num_samples" in data[n].attrs]
        return sorted(names, key=demo_sort_key)

    def mask(self, name: str) -> list[str]:
        return read_mask(self.file, name)

    def info(self, name: str) -> DemoInfo:
        g = self._group(name)
        return DemoInfo(
            name=name,
            task=Task.from_json(_attr_str(g.attrs["task"])),
            num_samples=int(g.attrs["num_samples"]),
            success=bool(g.attrs.get("success", False)),
            source=_attr_str(g.attrs.get("source", "unknown")),
        )

    def episode(self, name: str) -> Episode:
        g = self._group(name)
        keys = self.env_args["obs_keys"]
        obs = {env_key: np.concatenate([g["obs"][k][()], g["next_obs"][k][-1:]]) for env_key, k in keys.items()}
        meta = self.info(name)
        seed = int(g.attrs.get("seed", -1))
        return Episode(
            task=meta.task,
            obs=obs,
            actions=g["actions"][()],
            rewards=g["rewards"][()],
            dones=g["dones"][()],
            states=g["states"][()],
            success=meta.success,
            source=meta.source,
            model_xml=_attr_str(g.attrs.get("model_file", "")),
            expert_actions=g["expert_actions"][()] if "expert_actions" in g else None,
            seed=None if seed < 0 else seed,
            attrs={k: _attr_str(v) if isinstance(v, bytes) else v for k, v in g.attrs.items() if k not in _CORE_ATTRS},
            arrays=_read_extra(g),
        )

    def _group(self, name: str) -> h5py.Group:
        if name not in self.file["data"]:
            raise DemoFileError(f"{self.path}: no demo named {name!r}; the file has {len(self.demos)} demos")
        return self.file["data"][name]


# ----------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file. ``repairable``: ``vgmps demos merge`` rewrites it (totals, masks)."""

    path: str
    demo: str | None
    message: str
    fix: str = ""
    repairable: bool = False

    def __str__(self) -> str:
        where = f"{self.path}: {self.demo}: " if self.demo else f"{self.path}: "
        return where + self.message + (f"; {self.fix}" if self.fix else "")


DROP_HINT = "re-collect it or drop it with `vgmps demos merge OUT {path} --exclude {demo}`"
REPAIR_HINT = "rewrite the file with `vgmps demos merge OUT {path}` (recomputes totals and masks)"


def validate(path: str | os.PathLike) -> list[Problem]:
    """Check every array and attribute of every demo; returns every problem found (empty: good). Read-only.

    Never raises on a damaged file: whatever cannot be read becomes a problem naming it.
    """
    path = Path(path)
    try:
        with open_demo_file(path) as f:
            env_args = read_env_args(f, path)
            return _validate_open(f, str(path), env_args)
    except DemoFileError as err:
        return [Problem(str(path), None, str(err).removeprefix(f"{path}: "))]


def _expected_shapes(env_args: dict[str, Any], path: str) -> tuple[dict[str, Any], list[Problem]]:
    """Per-row shapes the file's ``env_args`` promise; a damaged field becomes a problem, not a crash."""
    problems, shapes = [], {}
    size = env_args.get("image_size")
    if isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size):
        shapes["image"] = (size[0], size[1], 3)
    else:
        problems.append(Problem(path, None, f"env_args image_size is {size!r}, expected [height, width]"))
    for key in ("action_dim", "proprio_dim"):
        value = env_args.get(key)
        if value is not None and not (isinstance(value, int) and value > 0):
            problems.append(Problem(path, None, f"env_args {key} is {value!r}, expected a positive integer"))
        elif value is not None:
            shapes[key] = value
    keys = env_args.get("obs_keys")
    if not (isinstance(keys, dict) and {"image", "proprio"} <= set(keys) and all(isinstance(v, str) for v in keys.values())):
        problems.append(Problem(path, None, f"env_args obs_keys is {keys!r}, expected {{'image': ..., 'proprio': ...}}"))
        keys = None
    shapes["keys"] = keys
    return shapes, problems


def _validate_open(f: h5py.File, path: str, env_args: dict[str, Any]) -> list[Problem]:
    shapes, problems = _expected_shapes(env_args, path)
    data = f["data"]
    total, total_known = 0, True
    names = sorted(data.keys(), key=demo_sort_key)
    for name in names:
        if not DEMO_RE.match(name):
            problems.append(Problem(path, name, "group name is not demo_<n>; robomimic cannot sort it", REPAIR_HINT.format(path=path)))
            continue
        try:
            found = _validate_demo(data[name], path, name, env_args, shapes)
        except Exception as err:  # noqa: BLE001 - a damaged demo must be reported, not crash the check
            found = [Problem(path, name, f"cannot be checked ({type(err).__name__}: {err})", DROP_HINT.format(path=path, demo=name))]
        problems += found
        try:
            total += int(data[name].attrs.get("num_samples", 0))
        except (TypeError, ValueError):
            total_known = False  # already reported by _validate_demo; a partial sum would mislead
    repair = REPAIR_HINT.format(path=path)
    if not total_known:
        pass
    elif "total" not in data.attrs:
        problems.append(Problem(path, None, "data has no 'total' attribute", repair, True))
    elif int(data.attrs["total"]) != total:
        problems.append(Problem(path, None, f"data.attrs['total'] is {int(data.attrs['total'])} but the demos hold {total} samples", repair, True))
    seen: dict[str, str] = {}
    for mask in ("train", "valid"):
        if f"mask/{mask}" not in f:
            problems.append(Problem(path, None, f"mask/{mask} is missing", repair, True))
            continue
        members = read_mask(f, mask)
        for name in members:
            if name not in data:
                problems.append(Problem(path, None, f"mask/{mask} lists {name}, which is not in data", repair, True))
            elif name in seen:
                problems.append(Problem(path, None, f"{name} is listed in mask/{seen[name]} and mask/{mask}", repair, True))
            seen[name] = mask
    unmasked = [n for n in names if DEMO_RE.match(n) and n not in seen]
    if unmasked:
        problems.append(Problem(path, None, f"demos in neither mask/train nor mask/valid: {unmasked}", repair, True))
    return problems


def _validate_demo(g: h5py.Group, path: str, name: str, env_args: dict[str, Any], shapes: dict[str, Any]) -> list[Problem]:
    """Every problem of one demo: attributes, then each array's dtype, shape, length and values."""
    drop = DROP_HINT.format(path=path, demo=name)
    if "num_samples" not in g.attrs:
        return [Problem(path, name, "no num_samples attribute: writing this demo was interrupted", drop)]
    messages: list[str] = []
    raw_t = g.attrs["num_samples"]
    if not (isinstance(raw_t, (int, np.integer)) and int(raw_t) > 0):
        return [Problem(path, name, f"num_samples is {raw_t!r}, not a positive integer", drop)]
    T = int(raw_t)
    for attr in ("task", "task_id", "success", "source", "model_file"):
        if attr not in g.attrs:
            messages.append(f"attribute {attr!r} is missing")
    if "task" in g.attrs:
        try:
            task = Task.from_json(_attr_str(g.attrs["task"]))
            if task.family != env_args["family"]:
                messages.append(f"task family {task.family!r} differs from the file's {env_args['family']!r}")
            if "task_id" in g.attrs and _attr_str(g.attrs["task_id"]) != task.task_id:
                messages.append(f"task_id {_attr_str(g.attrs['task_id'])!r} differs from the task's id {task.task_id!r}")
        except Exception as err:  # noqa: BLE001 - any damage to the JSON is a problem to report
            messages.append(f"task attribute is not a valid task ({type(err).__name__}: {err})")
    if "success" in g.attrs and not isinstance(g.attrs["success"], (bool, np.bool_, int, np.integer)):
        messages.append(f"success is {g.attrs['success']!r}, expected true/false")
    keys = shapes["keys"]
    action_dim, proprio_dim = shapes.get("action_dim"), shapes.get("proprio_dim")
    # name -> (expected row shape or None for any, dtype kind, finite check, value range)
    expected: dict[str, tuple[tuple | None, str, tuple[float, float] | None]] = {
        "actions": ((action_dim,) if action_dim else None, "f", (-1.0, 1.0)),
        "rewards": ((), "f", None),
        "dones": ((), "iub", (0, 1)),
        "states": (None, "f", None),
    }
    if keys:
        for grp in ("obs", "next_obs"):
            if "image" in shapes:
                expected[f"{grp}/{keys['image']}"] = (shapes["image"], "u", None)
            expected[f"{grp}/{keys['proprio']}"] = ((proprio_dim,) if proprio_dim else None, "f", None)
    arrays: dict[str, np.ndarray] = {}
    for key, spec in expected.items():
        if key not in g:
            messages.append(f"{key!r} is missing")
            continue
        arr = _read_array(g, key, messages)
        if arr is not None:
            arrays[key] = arr
            messages += _check_array(key, arr, T, *spec)
    if "expert_actions" in g:
        arr = _read_array(g, "expert_actions", messages)
        if arr is not None:
            messages += _check_array("expert_actions", arr, T, (action_dim,) if action_dim else None, "f", (-1.0, 1.0))
            if "actions" in arrays and arr.shape != arrays["actions"].shape:
                messages.append(f"expert_actions have shape {arr.shape}, actions {arrays['actions'].shape}")
    if keys:
        p_obs, p_next = arrays.get(f"obs/{keys['proprio']}"), arrays.get(f"next_obs/{keys['proprio']}")
        if p_obs is not None and p_next is not None and p_obs.shape == p_next.shape and len(p_obs) > 1:
            if not np.array_equal(p_obs[1:], p_next[:-1], equal_nan=True):
                messages.append("next_obs is not obs shifted by one step (proprio rows differ)")
    return [Problem(path, name, m, drop) for m in messages]


def _read_array(g: h5py.Group, key: str, messages: list[str]) -> np.ndarray | None:
    try:
        item = g[key]
        if not isinstance(item, h5py.Dataset):
            messages.append(f"{key!r} is a group, expected an array")
            return None
        return item[()]
    except Exception as err:  # noqa: BLE001 - h5py raises OSError, RuntimeError, KeyError for damaged chunks
        messages.append(f"{key!r} cannot be read (corrupted?): {err}")
        return None


def _check_array(key: str, arr: np.ndarray, T: int, row: tuple | None, kinds: str, bounds: tuple[float, float] | None) -> list[str]:
    out = []
    if arr.ndim == 0 or len(arr) != T:
        out.append(f"{key!r} has {len(arr) if arr.ndim else 0} rows, num_samples is {T}")
    if row is not None and arr.shape[1:] != row:
        out.append(f"{key!r} rows have shape {arr.shape[1:]}, expected {row}")
    elif row is None and key == "states" and arr.ndim != 2:
        out.append(f"{key!r} has shape {arr.shape}, expected [T, state size]")
    if arr.dtype.kind not in kinds:
        out.append(f"{key!r} has dtype {arr.dtype}, expected {'uint8' if kinds == 'u' else 'float' if kinds == 'f' else 'integers'}")
        return out
    if arr.dtype.kind == "f" and arr.size:
        bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
        if bad.any():
            verb = "contain" if key.endswith("actions") else "contains"
            out.append(f"{key} {verb} NaN or inf at step {int(np.argmax(bad))}")
            return out
    if bounds is not None and arr.size and (arr.min() < bounds[0] - 1e-6 or arr.max() > bounds[1] + 1e-6):
        out.append(f"{key} leave [{bounds[0]:g}, {bounds[1]:g}] (min {arr.min():.3g}, max {arr.max():.3g})"
                   if key.endswith("actions") else f"{key} has values outside {{0, 1}}")
    return out


def format_problems(problems: list[Problem]) -> str:
    """Problems grouped per demo, each group ending with its fix (what ``vgmps demos validate`` prints)."""
    lines: list[str] = []
    groups: dict[tuple[str, str | None], list[Problem]] = {}
    for p in problems:
        groups.setdefault((p.path, p.demo), []).append(p)
    for (path, demo), found in groups.items():
        head = f"{path}: {demo}" if demo else path
        if len(found) == 1:
            lines.append(str(found[0]))
            continue
        lines.append(f"{head}: {len(found)} problems:")
        lines += [f"  - {p.message}" for p in found]
        fixes = dict.fromkeys(p.fix for p in found if p.fix)
        lines += [f"  fix: {fix}" for fix in fixes]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- merge


def merge(inputs: list[str | os.PathLike], output: str | os.PathLike, exclude: list[str] = (), valid_every: int = 10,
          force: bool = False) -> int:
    """Concatenate demo files into ``output`` (renumbered), skipping ``exclude`` entries.

    An exclude entry is ``demo_3`` (any input) or ``path:demo_3`` (one input). Inputs must
    validate once excluded demos are ignored. The output is written to a temporary file and
    renamed into place, so it is never half-written. An existing ``output`` is replaced only
    with ``force``. Returns the number of demos written.
    """
    output = Path(output)
    resolved_inputs = [Path(p) for p in inputs]
    if not resolved_inputs:
        raise DemoFileError("merge: no input files")
    if any(p.resolve() == output.resolve() for p in resolved_inputs if p.exists()):
        raise DemoFileError(f"{output}: merge output must differ from its inputs")
    if output.exists() and not force:
        raise DemoFileError(f"{output} already exists; pass --force to replace it, or choose another output file")

    def excluded(path: Path, demo: str) -> bool:
        return demo in exclude or f"{path}:{demo}" in exclude

    env_args: dict[str, Any] | None = None
    for path in resolved_inputs:
        problems = [p for p in validate(path) if not (p.demo and excluded(path, p.demo)) and not p.repairable]
        if problems:
            raise DemoFileError("cannot merge, input has problems:\n" + format_problems(problems))
        with open_demo_file(path) as f:
            args = read_env_args(f, path)
        if env_args is None:
            env_args = args
        elif (problem := _compatible(env_args, args)) is not None:
            raise DemoFileError(f"{path}: cannot merge with {resolved_inputs[0]}: {problem}")
    assert env_args is not None
    tmp = output.with_name(output.name + ".merging")
    if tmp.exists():
        tmp.unlink()
    count, total, masks = 0, 0, {"train": [], "valid": []}
    with h5py.File(tmp, "w") as out:
        data = out.create_group("data")
        data.attrs["env_args"] = json.dumps(env_args)
        for path in resolved_inputs:
            with DemoReader(path) as reader:
                for name in reader.demos:
                    if excluded(path, name):
                        continue
                    new = f"demo_{count}"
                    reader.file.copy(reader.file["data"][name], data, name=new)
                    total += int(data[new].attrs["num_samples"])
                    valid = valid_every > 0 and count % valid_every == valid_every - 1
                    masks["valid" if valid else "train"].append(new)
                    count += 1
        data.attrs["total"] = total
        for mask, names in masks.items():
            _write_mask(out, mask, names)
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(tmp), str(output))
    return count
