"""A `vgmps train` process killed with SIGKILL after its first checkpoint resumes with
`resume=true` to the same parameters as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.test_training import EXPERT, TINY, _cfg
from vision_gmps.checkpoint import load_checkpoint
from vision_gmps.train import train

REPO = Path(__file__).resolve().parent.parent
ITERATIONS = 4


def _cli_args(run_dir: Path) -> list[str]:
    """The overrides ``_cfg(run_dir, "train.iterations=4")`` composes in-process, for the CLI."""
    return ["algo=gmps", *TINY, *EXPERT, f"run_dir={run_dir}", f"train.iterations={ITERATIONS}"]


def test_sigkill_after_first_checkpoint_then_resume_matches_uninterrupted(tmp_path):
    killed_dir = tmp_path / "killed"
    args = _cli_args(killed_dir)
    proc = subprocess.Popen([sys.executable, "-m", "vision_gmps.cli", "train", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed_dir / "checkpoints" / "last.pt"
    try:
        deadline = time.monotonic() + 120
        while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert last.is_file(), "the training process wrote no checkpoint"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = int(load_checkpoint(last)["iteration"])
    assert 1 <= killed_at < ITERATIONS, "the process finished before it could be killed; the test proves nothing"

    resumed = train(_cfg(killed_dir, f"train.iterations={ITERATIONS}", "resume=true"))
    straight = train(_cfg(tmp_path / "straight", f"train.iterations={ITERATIONS}"))
    assert resumed.iteration == straight.iteration == ITERATIONS
    assert resumed.env_episodes == straight.env_episodes
    for name, tensor in straight.policy.state_dict().items():
        torch.testing.assert_close(resumed.policy.state_dict()[name], tensor, rtol=1e-5, atol=1e-6)
    for a, b in zip(straight.step_sizes.values, resumed.step_sizes.values):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
