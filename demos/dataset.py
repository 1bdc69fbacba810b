"""Per-task batches of (image, proprio, expert action) from a demo file, for GMPS's outer loss.

The whole file is loaded into RAM when its decompressed size fits ``memory_budget_bytes``;
otherwise each ``sample`` reads just the requested rows from disk (images are chunked one
frame per chunk, so a random row costs one chunk read).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from demos.hdf5 import DemoFileError, DemoReader, open_h5
from robot_envs.base import Task

DEFAULT_MEMORY_BUDGET = 2 * 1024**3


class DemoDataset:
    """Demos grouped by task id (``"push/train/3"``).

    ``filter_key`` restricts to ``mask/<filter_key>`` (e.g. "train"); ``success_only`` drops failed
    demos. Actions are the expert labels (``expert_actions``) where a demo has them, else the
    executed ``actions``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
        filter_key: str | None = None,
        success_only: bool = False,
    ) -> None:
        self.path = Path(path)
        with DemoReader(self.path) as reader:
            self.env_args: dict[str, Any] = reader.env_args
            names = reader.demos
            if filter_key is not None:
                if f"mask/{filter_key}" not in reader.file:
                    raise DemoFileError(f"{self.path}: no mask/{filter_key}; masks: {sorted(reader.file.get('mask', {}).keys())}")
                allowed = set(reader.mask(filter_key))
                names = [n for n in names if n in allowed]
            infos = [reader.info(n) for n in names]
            if success_only:
                infos = [i for i in infos if i.success]
            self._action_key = {i.name: ("expert_actions" if "expert_actions" in reader.file["data"][i.name] else "actions") for i in infos}
        if not infos:
            raise DemoFileError(f"{self.path}: no demos left to train on (filter_key={filter_key}, success_only={success_only})")
        self.tasks: dict[str, Task] = {}
        self._demos: dict[str, list[tuple[str, int]]] = {}
        for info in infos:
            self.tasks.setdefault(info.task.task_id, info.task)
            self._demos.setdefault(info.task.task_id, []).append((info.name, info.num_samples))
        self._offsets = {tid: np.cumsum([0] + [n for _, n in demos]) for tid, demos in self._demos.items()}
        keys = self.env_args["obs_keys"]
        self._image_key, self._proprio_key = keys["image"], keys["proprio"]
        h, w = self.env_args["image_size"]
        row = h * w * 3 + 4 * (int(self.env_args["proprio_dim"]) + int(self.env_args["action_dim"]))
        self.nbytes = row * sum(int(o[-1]) for o in self._offsets.values())
        self.in_memory = self.nbytes <= memory_budget_bytes
        self._file: h5py.File | None = None
        self._pid = os.getpid()
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        if self.in_memory:
            self._arrays = {tid: self._read_task(tid) for tid in self._demos}
            self.close()

    # ------------------------------------------------------------------ info

    @property
    def task_ids(self) -> list[str]:
        return sorted(self.tasks, key=lambda t: (self.tasks[t].split, self.tasks[t].index))

    def num_samples(self, task_id: str) -> int:
        return int(self._offsets[self._check_task(task_id)][-1])

    @property
    def image_size(self) -> tuple[int, int]:
        h, w = self.env_args["image_size"]
        return int(h), int(w)

    def check_compatible(self, family: str, image_size: tuple[int, int] | list[int], action_dim: int | None = None) -> None:
        """Fail before training, with a message, when the file does not match the run's config."""
        if self.env_args["family"] != family:
            raise DemoFileError(f"demo file {self.path} holds family {self.env_args['family']!r}, config says {family!r}")
        want = (int(image_size[0]), int(image_size[1]))
        if self.image_size != want:
            h, w = self.image_size
            raise DemoFileError(f"demo file {self.path} has image size {h}x{w}, config says {want[0]}x{want[1]}")
        if action_dim is not None and int(self.env_args["action_dim"]) != int(action_dim):
            raise DemoFileError(f"demo file {self.path} has {self.env_args['action_dim']}-d actions, the env has {action_dim}")

    def find(self, task: Task) -> str | None:
        """The file's task id for ``task`` (None when the file has no demos of it).

        A task with the same id but other hidden parameters means the file was collected with
        another task seed: that is an error, not a miss, because training would imitate demos
        of a different task.
        """
        stored = self.tasks.get(task.task_id)
        if stored is None:
            return None
        same = stored.params.keys() == task.params.keys() and all(
            abs(stored.params[k] - task.params[k]) <= 1e-9 for k in task.params
        )
        if not same:
            raise DemoFileError(
                f"demo file {self.path} has {task.task_id} with {stored.params}, but the run's {task.task_id} has "
                f"{task.params}: collected with another task seed (env.tasks.seed)?"
            )
        return task.task_id

    # ------------------------------------------------------------------ data

    def task_arrays(self, task_id: str) -> dict[str, np.ndarray]:
        """All rows of one task: image uint8 [N,H,W,3], proprio float32 [N,P], action float32 [N,A]."""
        task_id = self._check_task(task_id)
        return self._arrays[task_id] if self.in_memory else self._read_task(task_id)

    def sample(self, task_id: str, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``batch_size`` rows of one task drawn uniformly with replacement."""
        task_id = self._check_task(task_id)
        rows = rng.integers(0, self.num_samples(task_id), size=batch_size)
        if self.in_memory:
            arrays = self._arrays[task_id]
            return {k: v[rows] for k, v in arrays.items()}
        return self._read_rows(task_id, rows)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __del__(self) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _check_task(self, task_id: str) -> str:
        if task_id not in self._demos:
            raise KeyError(f"{self.path}: no demos for task {task_id!r}; tasks in the file: {self.task_ids}")
        return task_id

    def _h5(self) -> h5py.File:
        # A handle inherited across fork is not safe to use: reopen in each process.
        if self._file is None or self._pid != os.getpid():
            self._file = open_h5(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def _read_demo(self, name: str, rows: np.ndarray | slice) -> dict[str, np.ndarray]:
        g = self._h5()["data"][name]
        return {
            "image": g["obs"][self._image_key][rows],
            "proprio": g["obs"][self._proprio_key][rows].astype(np.float32),
            "action": g[self._action_key[name]][rows].astype(np.float32),
        }

    def _read_task(self, task_id: str) -> dict[str, np.ndarray]:
        parts = [self._read_demo(name, slice(None)) for name, _ in self._demos[task_id]]
        return {k: np.concatenate([p[k] for p in parts]) for k in ("image", "proprio", "action")}

    def _read_rows(self, task_id: str, rows: np.ndarray) -> dict[str, np.ndarray]:
        offsets = self._offsets[task_id]
        demo_idx = np.searchsorted(offsets, rows, side="right") - 1
        out: dict[str, np.ndarray] = {}
        for d in np.unique(demo_idx):
            picked = np.flatnonzero(demo_idx == d)
            local = rows[picked] - offsets[d]
            # h5py fancy indexing needs increasing, unique indices.
            uniq, inverse = np.unique(local, return_inverse=True)
            part = self._read_demo(self._demos[task_id][d][0], uniq.tolist())
            for key, arr in part.items():
                if key not in out:
                    out[key] = np.empty((len(rows), *arr.shape[1:]), arr.dtype)
                out[key][picked] = arr[inverse]
        return out
