"""Data-parallel meta-training: the meta-batch of tasks split across ``torch.distributed`` ranks.

Launched with ``torchrun --nproc_per_node=K -m vision_gmps.cli train ...`` (one rank per GPU,
or CPU processes for a test); a plain ``vgmps train`` is one rank and touches none of this.
Each rank collects rollouts for its share of the iteration's tasks with its own sampler,
computes the meta-loss on them, and the ranks sum their gradients weighted by their share of
the tasks, so every rank takes the same Adam step as one process would on the whole
meta-batch. The expert data (demos, scripted-expert episodes, DAgger relabels) is gathered
so every rank holds all of it; rank 0 evaluates, logs and writes the checkpoints.

Why by hand rather than ``DistributedDataParallel``: the meta-loss calls the policy
functionally with per-task parameter dicts (the inner step), which DDP's module hooks do not
see; one flat all-reduce of the gradients after ``backward`` is what DDP would do here.

``all_gather_object`` pickles between the ranks of one job: a trusted boundary, as Ray's is;
nothing here listens on a socket beyond what ``torchrun``'s rendezvous sets up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: ``rank`` of ``world`` (``world == 1``: not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, items: list) -> list:
        """This rank's part of ``items`` (round robin, so shares differ by at most one)."""
        return items[self.rank :: self.world]


def init_from_environment(device: torch.device, timeout_s: float = 1800.0) -> tuple[Ranks, torch.device]:
    """Join the ``torchrun`` job named by its environment variables; without them, one rank.

    ``device`` is the configured one; with CUDA each rank takes ``cuda:<LOCAL_RANK>``.
    ``timeout_s`` bounds every collective: long enough for the other ranks to wait while
    rank 0 runs a validation check in line, short enough that a lost rank ends the job.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks(), device
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s))
    return ranks, device


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_gradients(parameters: list[torch.Tensor], weight: float, loss: float) -> float:
    """Replace each gradient by the sum over ranks of ``weight`` x that rank's gradient; return the summed loss.

    ``weight`` is this rank's share of the meta-batch (its tasks / all tasks), so the result is
    the gradient of the mean loss over every task. A parameter without a gradient counts as zero.
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.detach().reshape(-1) for g in grads] + [torch.tensor([loss], dtype=grads[0].dtype,
                                                                              device=grads[0].device)])
    flat = flat.to(_device()) * weight
    dist.all_reduce(flat)
    flat = flat.to(grads[0].device)
    offset = 0
    for p, g in zip(parameters, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).clone()
        offset += n
    return float(flat[-1])


def weighted_mean(values: dict[str, float], weight: float) -> dict[str, float]:
    """Each float in ``values`` averaged over ranks with ``weight`` (weights sum to 1); ints are summed."""
    keys = sorted(values)
    flat = torch.tensor([float(values[k]) * (1.0 if isinstance(values[k], int) else weight) for k in keys],
                        dtype=torch.float64, device=_device())
    dist.all_reduce(flat)
    return {k: (int(round(v)) if isinstance(values[k], int) else v) for k, v in zip(keys, flat.tolist())}


def gather(obj: Any, ranks: Ranks) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    out: list[Any] = [None] * ranks.world
    dist.all_gather_object(out, obj)
    return out


def broadcast_tensors(tensors: list[torch.Tensor]) -> None:
    """Rank 0's values into every rank's ``tensors`` (in place)."""
    for t in tensors:
        buf = t.detach().to(_device())
        dist.broadcast(buf, src=0)
        with torch.no_grad():
            t.copy_(buf.to(t.device))


def check_in_sync(tensors: list[torch.Tensor], what: str) -> None:
    """Raise if the ranks' ``tensors`` differ: a nondeterministic kernel or a bug would silently fork the runs."""
    total = sum(float(t.detach().double().sum()) for t in tensors)
    sums = torch.tensor([total, -total], dtype=torch.float64, device=_device())
    dist.all_reduce(sums, op=dist.ReduceOp.MAX)
    if float(sums[0]) != total or float(-sums[1]) != total:
        raise RuntimeError(f"the ranks' {what} differ (checksums {float(-sums[1])!r}..{float(sums[0])!r}): "
                           "the data-parallel runs have diverged; rerun on one process to compare")


def shutdown(ok: bool) -> None:
    """Leave the job: after a barrier when this rank finished, at once when it failed.

    A process that exits with the process group still up can abort in gloo's threads
    ("terminate called without an active exception"), failing a job that succeeded.
    """
    if not dist.is_initialized():
        return
    if ok:
        dist.barrier()
    dist.destroy_process_group()
