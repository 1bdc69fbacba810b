"""Regenerate ``docs/errors.md``: run every wrong input we tried and record what the user sees.

    PYTHONPATH=. OMP_NUM_THREADS=1 python docs/make_errors.py      # about 2 minutes on 2 cores

Each case runs ``python -m vision_gmps.cli ...`` in a scratch folder (so paths read as a
user's would) and keeps stderr without the timestamped log lines and progress bars.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = ("wandb.mode=disabled torch_threads=1 env.tasks.train=3 env.kwargs.horizon=8 env.kwargs.image_size=[16,16] "
        "policy.conv_channels=[4] policy.conv_strides=[2] policy.hidden_sizes=[8] algo.rollouts_per_task=2 "
        "algo.outer_steps=1 train.eval_every=0 train.checkpoint_every=1 sampler.num_envs=2 "
        "algo.expert.episodes_per_task=1 algo.dagger.rollouts_per_task=1 train.iterations=2").split()
CKPT = "runs/mine/checkpoints/last.pt"

# (what the user did, arguments after `vgmps`)
CASES: list[tuple[str, list[str]]] = [
    ("misspelt subcommand", ["trian"]),
    ("misspelt key", ["train", "algo.inner_lrr=0.5"]),
    ("misspelt key with hydra's `+` hint applied", ["train", "+algo.inner_lrr=0.5"]),
    ("misspelt nested key", ["train", "env.kwargs.horizonn=30"]),
    ("unknown group option", ["train", "env=pointt"]),
    ("no `=`", ["train", "algo.inner_lr"]),
    ("misspelt key inside a dict value", ["train", "env.kwargs={horizonn:10}"]),
    ("zero checkpoint interval", ["train", "train.checkpoint_every=0"]),
    ("several bad numbers at once", ["train", "train.iterations=abc", "algo.gamma=2", "sampler.num_envs=-1"]),
    ("more tasks per batch than the split has", ["train", "algo.meta_batch_size=30"]),
    ("train into a folder holding another run", ["train", *TINY, "run_dir=runs/mine"]),
    ("resume with another learning rate and task count", ["train", *TINY, "run_dir=runs/mine", "resume=true",
                                                          "algo.outer_lr=0.01", "env.tasks.train=4"]),
    ("resume a folder with no checkpoint", ["train", *TINY, "run_dir=runs/empty", "resume=true"]),
    ("resume with a damaged last.pt", ["train", *TINY, "run_dir=runs/damaged", "resume=true", "train.iterations=3"]),
    ("train from demos with NaN expert actions", ["train", *TINY, "run_dir=runs/nan", "algo.expert.source=demos",
                                                  "algo.expert.demo_files=[data/nan.hdf5]", "algo.dagger.enabled=false"]),
    ("adapt with no checkpoint", ["adapt"]),
    ("adapt a checkpoint that does not exist", ["adapt", "runs/typo/checkpoints/last.pt"]),
    ("adapt two checkpoints", ["adapt", CKPT, "runs/other/last.pt"]),
    ("adapt with another image size", ["adapt", CKPT, "env.kwargs.image_size=[20,20]"]),
    ("adapt with another horizon", ["adapt", CKPT, "env.kwargs.horizon=12"]),
    ("adapt a point checkpoint on push", ["adapt", CKPT, "env=push"]),
    ("adapt on more tasks than the split has", ["adapt", CKPT, "adapt.num_tasks=50"]),
    ("adapt with an unknown step-size mode", ["adapt", CKPT, "adapt.step_size=best"]),
    ("adapt with a misspelt on/off flag", ["adapt", CKPT, "adapt.control=flase"]),
    ("train through the natural step, meta-test with another", ["train", "algo.inner_step=natural",
                                                               "adapt.step_size=learned"]),
    ("collect into an existing file", ["collect", "output=data/point.hdf5", "num_tasks=2"]),
    ("collect with bad counts", ["collect", "output=data/new.hdf5", "num_tasks=25", "demos_per_task=0"]),
    ("collect a task the split lacks", ["collect", "output=data/new.hdf5", "task_indices=[0,25]"]),
    ("collect with a misspelt key", ["collect", "demos_per_taskk=3"]),
    ("merge onto an existing file", ["demos", "merge", "data/point.hdf5", "data/a.hdf5"]),
    ("validate a damaged file", ["demos", "validate", "data/damaged.hdf5"]),
    ("validate a file another process has open", ["demos", "validate", "data/busy.hdf5"]),
    ("info on a missing file", ["demos", "info", "data/missing.hdf5"]),
    ("train from a folder that is not an expert zoo", ["train", *TINY, "run_dir=runs/fromzoo", "algo.expert.source=zoo",
                                                       "algo.expert.zoo=data"]),
    ("list a folder that is not an expert zoo", ["experts", "list", "zoo=data"]),
    ("train experts into an existing zoo", ["experts", "train", "env.tasks.train=2", "steps=10", "zoo=zoos/point"]),
    ("an unknown door gripper mode", ["train", "env=door", "env.kwargs.start=ready", "env.kwargs.gripper=open"]),
    ("door's closed gripper without the ready start", ["train", "env=door", "env.kwargs.gripper=closed"]),
]

SETUP = """
import sys, h5py, numpy as np
from demos.collect import collect_scripted, select_tasks
from robot_envs import make_family
family = make_family("point")
for name, n in (("point", 2), ("a", 1), ("nan", 3), ("damaged", 2), ("busy", 1)):
    collect_scripted(family, select_tasks(family, "train", n, 0), 2, f"data/{name}.hdf5", progress=False)
with h5py.File("data/nan.hdf5", "a") as f:
    f["data/demo_4/expert_actions"][5] = np.nan
with h5py.File("data/damaged.hdf5", "a") as f:
    f["data/demo_0/expert_actions"][3] = np.nan
    f["data/demo_0/dones"][0] = 7
    f["data/demo_1"].attrs["task"] = "{not json"
    del f["data/demo_2/next_obs/proprio"]
import pathlib
pathlib.Path("zoos/point").mkdir(parents=True)
pathlib.Path("zoos/point/zoo.json").write_text("{}")  # a zoo someone already has
"""
LOG_LINE = re.compile(r"^\[\d\d:\d\d:\d\d [\w.]+\]")


def vgmps(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "VGMPS_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "vision_gmps.cli", *args], cwd=cwd, env=env, capture_output=True, text=True)


def user_sees(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.replace("\r", "\n").splitlines()
             if line.strip() and not LOG_LINE.match(line) and "it/s]" not in line and "ep/s]" not in line and "%|" not in line]
    return "\n".join(lines).strip()


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "data").mkdir()
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-c", SETUP], cwd=cwd, env=env, check=True)
        for run in ("mine", "damaged"):
            proc = vgmps(["train", *TINY, f"run_dir=runs/{run}"], cwd)
            assert proc.returncode == 0, proc.stderr[-2000:]
        (cwd / "runs/damaged/checkpoints/last.pt").write_bytes(b"half a checkpoint")
        (cwd / "runs/empty").mkdir()
        holder = subprocess.Popen([sys.executable, "-c", "import h5py, time; f = h5py.File('data/busy.hdf5', 'a'); "
                                   "print('locked', flush=True); time.sleep(3600)"], cwd=cwd, stdout=subprocess.PIPE, text=True)
        holder.stdout.readline()
        rows = []
        try:
            for what, args in CASES:
                start = time.perf_counter()
                proc = vgmps(args, cwd)
                shown = " ".join(a for a in args if a not in TINY) + (" (+ the toy-size keys)" if set(TINY) & set(args) else "")
                rows.append(f"| {what} | `vgmps {shown}` | {proc.returncode} | {cell(user_sees(proc))} |")
                print(f"{time.perf_counter() - start:5.1f}s  {what}", file=sys.stderr)
        finally:
            holder.kill()
            holder.wait()
    header = [
        "# What a wrong input gets",
        "",
        "Every row is a mistake we made on purpose, run as a user would; the message is what `vgmps`",
        "printed, exactly (log lines and progress bars left out). Regenerate with",
        "`PYTHONPATH=. python docs/make_errors.py`. Add `VGMPS_DEBUG=1` to any command to see the traceback.",
        "In every case nothing was written, overwritten or mixed: the check runs before any work.",
        "",
        "| what the user did | command | exit | what they see |",
        "|---|---|---|---|",
    ]
    (REPO / "docs" / "errors.md").write_text("\n".join(header + rows) + "\n")


if __name__ == "__main__":
    main()
