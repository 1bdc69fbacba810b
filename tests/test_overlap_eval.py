"""The validation check overlapped with the next iteration's outer steps (``train.overlap_eval``)
changes when rows are written, not what they hold: rows, parameters and a resumed run match
the run that checks in line."""

from __future__ import annotations

import json
import shutil

import torch

from tests.test_training import _cfg
from vision_gmps.train import train

# point envs in 2 worker processes: the check's rollouts run outside the learner's process
CHECKED = ["train.iterations=3", "train.eval_every=1", "train.eval_tasks=2", "sampler.backend=parallel",
           "sampler.workers=2"]


def _rows(run_dir) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run_dir / "train_metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)), f"rows out of order or repeated: {steps}"
    return {r["step"]: {k: v for k, v in r.items() if not k.startswith("time/")} for r in rows}


def _same_parameters(a, b) -> None:
    for name, tensor in a.policy.state_dict().items():
        torch.testing.assert_close(b.policy.state_dict()[name], tensor, rtol=1e-5, atol=1e-6)


def test_overlapped_check_writes_the_same_rows_and_parameters(tmp_path):
    inline = train(_cfg(tmp_path / "inline", *CHECKED, "train.overlap_eval=false"))
    overlapped = train(_cfg(tmp_path / "overlap", *CHECKED, "train.overlap_eval=true"))
    assert overlapped._overlaps_evaluation() and not inline._overlaps_evaluation()
    rows = _rows(tmp_path / "inline")
    assert all("eval/success_post" in rows[i] for i in (1, 2, 3)), "the run made no checks: the test proves nothing"
    assert _rows(tmp_path / "overlap") == rows
    _same_parameters(inline, overlapped)


def test_resume_from_a_checkpoint_whose_check_was_still_running(tmp_path):
    straight = train(_cfg(tmp_path / "straight", *CHECKED))
    for logged in (False, True):  # killed before or after the deferred row of iteration 1 was written
        run = tmp_path / f"killed_{logged}"
        shutil.copytree(tmp_path / "straight", run)
        checkpoints = run / "checkpoints"
        state = torch.load(checkpoints / "iter_00001.pt", weights_only=True)
        assert "eval/success_post" not in state["pending_row"], "iteration 1's check was not deferred"
        shutil.copy(checkpoints / "iter_00001.pt", checkpoints / "last.pt")
        keep = [line for line in (run / "train_metrics.jsonl").read_text().splitlines()
                if json.loads(line)["step"] <= (1 if logged else 0)]
        (run / "train_metrics.jsonl").write_text("".join(line + "\n" for line in keep))
        resumed = train(_cfg(run, *CHECKED, "resume=true"))
        assert _rows(run) == _rows(tmp_path / "straight")
        _same_parameters(straight, resumed)
