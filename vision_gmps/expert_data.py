"""Per-task expert data for the outer (imitation) loss: seeded from demo files or a scripted
expert, grown by DAgger relabels of the adapted policy's own visits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from demos.dataset import DemoDataset
from demos.hdf5 import format_problems, validate
from robot_envs import Task
from robot_envs.errors import UserError
from vision_gmps.rollouts import RolloutBatch


class ExpertBuffer:
    """Growing arrays of (image, proprio, expert action) per training task.

    ``max_per_task`` bounds memory: when full, the oldest relabelled samples are
    dropped first; the initial demonstrations (``pinned``) are always kept.
    """

    def __init__(self, num_tasks: int, max_per_task: int = 20000) -> None:
        self.max_per_task = max_per_task
        self.images: list[np.ndarray | None] = [None] * num_tasks
        self.proprio: list[np.ndarray | None] = [None] * num_tasks
        self.actions: list[np.ndarray | None] = [None] * num_tasks
        self.pinned = np.zeros(num_tasks, dtype=np.int64)
        self.demo_sources: list[list[tuple[DemoDataset, str]]] = [[] for _ in range(num_tasks)]

    @property
    def num_tasks(self) -> int:
        return len(self.images)

    def memory_size(self, task: int) -> int:
        return 0 if self.actions[task] is None else len(self.actions[task])

    def demo_size(self, task: int) -> int:
        return sum(dataset.num_samples(task_id) for dataset, task_id in self.demo_sources[task])

    def size(self, task: int) -> int:
        return self.memory_size(task) + self.demo_size(task)

    def attach_demos(self, task: int, dataset: DemoDataset, task_id: str) -> None:
        self.demo_sources[task].append((dataset, task_id))

    def add(self, task: int, images: np.ndarray, proprio: np.ndarray, actions: np.ndarray, pin: bool = False) -> None:
        if not np.all(np.isfinite(actions)):
            raise ValueError(f"expert actions for task {task} contain NaN or inf; check the expert or demo file")
        if self.actions[task] is None:
            self.images[task], self.proprio[task], self.actions[task] = images, proprio, actions
        else:
            self.images[task] = np.concatenate([self.images[task], images])
            self.proprio[task] = np.concatenate([self.proprio[task], proprio])
            self.actions[task] = np.concatenate([self.actions[task], actions])
        if pin:
            self.pinned[task] += len(actions)
        excess = self.memory_size(task) - self.max_per_task
        if excess > 0:
            keep = np.r_[0 : self.pinned[task], self.pinned[task] + excess : self.memory_size(task)]
            self.images[task] = self.images[task][keep]
            self.proprio[task] = self.proprio[task][keep]
            self.actions[task] = self.actions[task][keep]

    def add_relabelled(
        self, batch: RolloutBatch, labels: np.ndarray, pin: bool = False, slots: list[int] | None = None
    ) -> None:
        """Add every visited state of ``batch`` with its expert label ([N, T, A]).

        ``slots[j]`` is the buffer slot of the batch's j-th task (default: the same index),
        for batches that hold a subset of the training tasks.
        """
        for task in range(len(batch.tasks)):
            rows = batch.episodes_of(task)
            self.add(
                task if slots is None else slots[task],
                batch.images[rows].reshape(-1, *batch.images.shape[2:]),
                batch.proprio[rows].reshape(-1, batch.proprio.shape[-1]),
                labels[rows].reshape(-1, labels.shape[-1]).astype(np.float32),
                pin=pin,
            )

    def sample(self, task: int, batch_size: int, rng: np.random.Generator, dtype: torch.dtype) -> tuple[Tensor, ...]:
        if self.size(task) == 0:
            raise ValueError(f"no expert data for training task {task}; collect demos for every training task")
        sources = [(d.num_samples(t), lambda k, d=d, t=t: d.sample(t, k, rng)) for d, t in self.demo_sources[task]]
        sources.append((self.memory_size(task), lambda k: self._sample_memory(task, k, rng)))
        counts = rng.multinomial(batch_size, np.array([n for n, _ in sources]) / self.size(task))
        parts = [draw(k) for (_, draw), k in zip(sources, counts) if k > 0]
        return (
            torch.from_numpy(np.concatenate([p["image"] for p in parts])),
            torch.from_numpy(np.concatenate([p["proprio"] for p in parts])).to(dtype),
            torch.from_numpy(np.concatenate([p["action"] for p in parts])).to(dtype),
        )

    def _sample_memory(self, task: int, k: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        idx = rng.integers(0, self.memory_size(task), size=k)
        return {"image": self.images[task][idx], "proprio": self.proprio[task][idx], "action": self.actions[task][idx]}

    def state_dict(self) -> dict:
        return {
            "max_per_task": self.max_per_task,
            "pinned": torch.from_numpy(self.pinned.copy()),
            "tasks": [
                {
                    "images": torch.from_numpy(self.images[i]),
                    "proprio": torch.from_numpy(self.proprio[i]),
                    "actions": torch.from_numpy(self.actions[i]),
                }
                if self.actions[i] is not None
                else {}
                for i in range(self.num_tasks)
            ],
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> "ExpertBuffer":
        buf = cls(len(state["tasks"]), int(state["max_per_task"]))
        buf.pinned = state["pinned"].numpy().copy()
        for i, task in enumerate(state["tasks"]):
            if task:
                buf.images[i] = task["images"].numpy()
                buf.proprio[i] = task["proprio"].numpy()
                buf.actions[i] = task["actions"].numpy()
        return buf


def attach_demo_files(
    buffer: ExpertBuffer, paths: list[str], family: str, image_size: tuple[int, int], action_dim: int, tasks: list[Task]
) -> list[DemoDataset]:
    """Attach every training task's demos from ``paths``; fail before training on any mismatch.

    Each file gets the full ``vgmps demos validate`` check first (NaN expert actions,
    shapes, lengths, metadata), so damaged data is refused before any rollout.
    """
    if not paths:
        raise UserError("algo.expert.source=demos needs algo.expert.demo_files=[path.hdf5, ...]")
    datasets = []
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"demo file {path} does not exist (algo.expert.demo_files)")
        problems = [p for p in validate(path) if not p.repairable]  # stale totals or masks do not affect training
        if problems:
            raise UserError(f"demo file {path} (algo.expert.demo_files) has problems:\n{format_problems(problems)}")
        dataset = DemoDataset(path)
        dataset.check_compatible(family, image_size, action_dim)
        datasets.append(dataset)
    missing = []
    for i, task in enumerate(tasks):
        for dataset in datasets:
            task_id = dataset.find(task)
            if task_id is not None:
                buffer.attach_demos(i, dataset, task_id)
        if buffer.size(i) == 0:
            missing.append(task.task_id)
    if missing:
        raise UserError(
            f"demo files {paths} have no demos for training tasks {missing}; collect them with "
            f"`vgmps collect env={family} split=train` or lower env.tasks.train"
        )
    return datasets
