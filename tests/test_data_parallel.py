"""The data-parallel learner (``vision_gmps.distributed``) on CPU processes with gloo.

Summing the ranks' gradients weighted by their share of the tasks gives the gradient of the
mean loss over every task, for uneven shares too; and a two-rank ``torchrun`` training job
with DAgger and validation checks completes with the ranks in sync and every step counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.test_training import EXPERT, TINY
from vision_gmps import distributed
from vision_gmps.checkpoint import load_checkpoint
from vision_gmps.distributed import Ranks

REPO = Path(__file__).resolve().parent.parent
TASKS = 3  # over 2 ranks: shares of 2 and 1


def _task_losses(w: torch.Tensor) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    data = [torch.randn(5, 4, generator=g) for _ in range(TASKS)]
    return [((x @ w).sin() ** 2).mean() for x in data]


def _rank_gradient(rank: int, world: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    ranks = Ranks(rank, world)
    w = torch.nn.Parameter(torch.linspace(-1, 1, 8).reshape(4, 2))
    mine = ranks.share(list(range(TASKS)))
    losses = _task_losses(w)
    loss = torch.stack([losses[i] for i in mine]).mean()
    loss.backward()
    total = distributed.all_reduce_gradients([w], len(mine) / TASKS, loss.item())
    means = distributed.weighted_mean({"success": float(rank), "episodes": 10}, len(mine) / TASKS)
    torch.save({"grad": w.grad, "loss": total, "means": means}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_weighted_gradient_sum_equals_the_mean_loss_gradient_over_all_tasks(tmp_path):
    mp.spawn(_rank_gradient, args=(2, str(tmp_path / "store"), str(tmp_path / "out")), nprocs=2)
    w = torch.nn.Parameter(torch.linspace(-1, 1, 8).reshape(4, 2))
    loss = torch.stack(_task_losses(w)).mean()
    loss.backward()
    for rank in range(2):
        got = torch.load(tmp_path / f"out.{rank}", weights_only=True)
        torch.testing.assert_close(got["grad"], w.grad)
        assert abs(got["loss"] - loss.item()) < 1e-6
        # rank 0 holds 2 of 3 tasks: success (0 x 2 + 1 x 1) / 3; integer counts are summed
        assert abs(got["means"]["success"] - 1 / 3) < 1e-9 and got["means"]["episodes"] == 20


def _torchrun(run: Path, *extra: str) -> None:
    args = ["algo=gmps", *TINY, *EXPERT, f"env.tasks.train={TASKS}", "train.eval_every=1", "train.eval_tasks=2",
            "torch_threads=1", f"run_dir={run}", *extra]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "vision_gmps.cli", "train", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_rank_training_job_completes_in_sync_and_counts_every_step(tmp_path):
    run = tmp_path / "ddp"
    _torchrun(run, "train.iterations=2")
    rows = [json.loads(line) for line in (run / "train_metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2], "rank 0 alone writes one row per iteration"
    last = rows[-1]
    assert "eval/success_post" in rows[1] and "eval/success_post" in last
    horizon, rollouts = 8, 3  # TINY
    assert last["steps/meta_pre"] == 2 * TASKS * rollouts * horizon  # both ranks' rollouts, each task once
    assert last["steps/dagger"] == 2 * TASKS * 1 * horizon
    assert last["steps/expert_episodes"] == TASKS * 2 * horizon
    assert last["env_episodes"] == TASKS * 2 + 2 * TASKS * (rollouts + 1)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["iteration"] == 2 and state["env_episodes"] == last["env_episodes"]
    # every rank's DAgger relabels reach every rank's buffer, so rank 0's checkpoint holds all of them
    sizes = [len(t["actions"]) for t in state["buffer"]["tasks"]]
    assert sizes == [horizon * (2 + 2 * 1)] * TASKS

    # resumed on two ranks: rank 0 carries the counts on, the others start from zero, nothing counts twice
    _torchrun(run, "train.iterations=3", "resume=true")
    rows = [json.loads(line) for line in (run / "train_metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[-1]["steps/meta_pre"] == 3 * TASKS * rollouts * horizon
    assert rows[-1]["steps/expert_episodes"] == TASKS * 2 * horizon
    straight = tmp_path / "straight"  # and continues exactly: the same parameters as 3 iterations in one go
    _torchrun(straight, "train.iterations=3")
    resumed, uninterrupted = (load_checkpoint(d / "checkpoints" / "last.pt")["policy"] for d in (run, straight))
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6)
