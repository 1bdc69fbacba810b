"""Learning curve from a finished run's checkpoints: validation-split success before and after K steps.

Each ``checkpoints/iter_*.pt`` of ``--run`` is adapted with ``vgmps adapt`` (the same code path as
every other table) on ``--tasks`` tasks of the **valid** split (the test split stays untouched),
``--eval-episodes`` starts each, and the table gives success with 95% Wilson intervals against
the meta-training episodes the checkpoint had used.

    python benchmarks/learning_curve.py --run runs/push_s0 --tasks 10 --steps 1 -- torch_threads=1 adapt.rollouts_per_task=40
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vision_gmps.adapt import adapt
from vision_gmps.checkpoint import load_checkpoint
from vision_gmps.config import load_config
from vision_gmps.evaluation import format_interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a training run folder with checkpoints/iter_*.pt")
    parser.add_argument("--tasks", type=int, default=10, help="valid-split tasks per point")
    parser.add_argument("--eval-episodes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="hydra overrides for vgmps adapt")
    args = parser.parse_args()
    checkpoints = sorted((args.run / "checkpoints").glob("iter_*.pt"))
    if not checkpoints:
        raise SystemExit(f"no checkpoints/iter_*.pt in {args.run}")
    points = []
    for ckpt in checkpoints:
        out = args.run / "curve" / ckpt.stem
        results = adapt(load_config(["wandb.mode=disabled", f"adapt.checkpoint={ckpt}", "adapt.split=valid",
                                     f"adapt.num_tasks={args.tasks}", f"adapt.steps={args.steps}",
                                     f"adapt.eval_episodes={args.eval_episodes}", "adapt.video.sheet_tasks=1",
                                     f"run_dir={out}", *args.overrides]))
        rows = next(iter(results.values())).rows
        points.append({"checkpoint": ckpt.name, "env_episodes": int(load_checkpoint(ckpt)["env_episodes"]),
                       "before": rows[0], "after": rows[-1]})
    w = lambda r: format_interval(r["success"], (r["success_wilson_low"], r["success_wilson_high"]))  # noqa: E731
    lines = [f"{args.run}: valid split, {args.tasks} tasks x {args.eval_episodes} starts, {args.steps} step(s)", "",
             "| checkpoint | meta-training episodes | before | after |", "|---|---|---|---|"]
    lines += [f"| {p['checkpoint']} | {p['env_episodes']:,} | {w(p['before'])} | {w(p['after'])} |" for p in points]
    text = "\n".join(lines)
    print(text)
    (args.run / "curve" / "table.md").write_text(text + "\n")
    (args.run / "curve" / "points.json").write_text(json.dumps(points))


if __name__ == "__main__":
    main()
