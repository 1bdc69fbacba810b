"""Per-task expert data for the outer (imitation) loss: seeded from demos or a scripted
expert, grown by DAgger relabels of the adapted policy's own visits."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

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

    @property
    def num_tasks(self) -> int:
        return len(self.images)

    def size(self, task: int) -> int:
        return 0 if self.actions[task] is None else len(self.actions[task])

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
        excess = self.size(task) - self.max_per_task
        if excess > 0:
            keep = np.r_[0 : self.pinned[task], self.pinned[task] + excess : self.size(task)]
            self.images[task] = self.images[task][keep]
            self.proprio[task] = self.proprio[task][keep]
            self.actions[task] = self.actions[task][keep]

    def add_relabelled(self, batch: RolloutBatch, labels: np.ndarray, pin: bool = False) -> None:
        """Add every visited state of ``batch`` with its expert label ([N, T, A])."""
        for task in range(len(batch.tasks)):
            rows = batch.episodes_of(task)
            self.add(
                task,
                batch.images[rows].reshape(-1, *batch.images.shape[2:]),
                batch.proprio[rows].reshape(-1, batch.proprio.shape[-1]),
                labels[rows].reshape(-1, labels.shape[-1]).astype(np.float32),
                pin=pin,
            )

    def sample(self, task: int, batch_size: int, rng: np.random.Generator, dtype: torch.dtype) -> tuple[Tensor, ...]:
        if self.size(task) == 0:
            raise ValueError(f"no expert data for training task {task}; collect demos for every training task")
        idx = rng.integers(0, self.size(task), size=batch_size)
        return (
            torch.from_numpy(self.images[task][idx]),
            torch.from_numpy(self.proprio[task][idx]).to(dtype),
            torch.from_numpy(self.actions[task][idx]).to(dtype),
        )

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
