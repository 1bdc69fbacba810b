"""``vgmps collect`` (hydra overrides) and ``vgmps demos info|validate|replay|merge`` (argparse).

Both entry points return an exit code: 0 ok, 1 a file or check failed, 2 bad usage/config.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from demos.hdf5 import DemoFileError, DemoReader, merge, validate

# ----------------------------------------------------------------------------- collect


# `vgmps collect` composes its hydra config in vision_gmps.collect (the CLI layer) and calls
# run_collect with the plain dict: demos/ imports nothing from vision_gmps/.
COLLECT_USAGE = ("usage: vgmps collect [hydra overrides]   e.g. env=point split=test demos_per_task=10 output=data/p.hdf5\n"
                 "keys: source (scripted|keyboard|spacemouse) split num_tasks task_indices demos_per_task output noise seed")


def run_collect(raw: dict[str, Any]) -> int:
    """``vgmps collect`` on a composed config (a plain dict); returns the exit code, errors printed."""
    try:
        return _collect(raw)
    except (DemoFileError, RuntimeError, ValueError) as err:
        print(f"vgmps collect: {err}", file=sys.stderr)
        return 1


def _collect(raw: dict[str, Any]) -> int:
    from demos.collect import collect_scripted, select_tasks
    from robot_envs import make_family

    family = make_family(raw["env"]["family"], **raw["env"].get("kwargs", {}))
    split = raw["split"]
    num_tasks = raw["num_tasks"] if raw["num_tasks"] is not None else int(raw["env"]["tasks"][split])
    tasks = select_tasks(family, split, num_tasks, int(raw["env"]["tasks"]["seed"]), raw["task_indices"])
    output = Path(raw["output"])
    if raw["source"] == "scripted":
        stats = collect_scripted(family, tasks, int(raw["demos_per_task"]), output, noise=float(raw["noise"]),
                                 seed=int(raw["seed"]), progress=bool(raw["progress"]), valid_every=int(raw["valid_every"]))
        print(f"wrote {stats.demos} scripted demos for {len(tasks)} {split} tasks of {family.name} to {output} "
              f"(success {stats.successes}/{stats.demos} = {stats.success_rate:.0%})")
    elif raw["source"] in ("keyboard", "spacemouse"):
        from demos.teleop import DEFAULT_GAIN, LiveView, has_display, make_device, teleop_collect

        teleop = raw["teleop"]
        live = teleop["live_view"]
        view = LiveView() if (live is True or (live == "auto" and has_display())) else None
        device = make_device(raw["source"], pos_sensitivity=float(teleop["pos_sensitivity"]))
        gain = float(teleop["gain"]) if teleop.get("gain") else DEFAULT_GAIN[raw["source"]]
        stats = teleop_collect(family, tasks, device, output, int(raw["demos_per_task"]), raw["source"], gain=gain,
                               view=view, step_hz=10.0, seed=int(raw["seed"]), valid_every=int(raw["valid_every"]))
        print(f"kept {len(stats.kept)} episodes ({stats.discarded} discarded, {stats.aborted} reset) in {output}")
    else:
        print(f"vgmps collect: unknown source {raw['source']!r}; use scripted, keyboard or spacemouse", file=sys.stderr)
        return 2
    print(f"inspect with: vgmps demos info {output}")
    return 0


# ----------------------------------------------------------------------------- demos


def summarize(path: str | Path) -> dict[str, Any]:
    """What ``vgmps demos info`` shows, as data."""
    path = Path(path)
    with DemoReader(path) as reader:
        per_task: dict[str, dict[str, Any]] = defaultdict(lambda: {"demos": 0, "successes": 0, "lengths": [], "sources": set()})
        for name in reader.demos:
            info = reader.info(name)
            row = per_task[info.task.task_id]
            row["params"] = info.task.params
            row["demos"] += 1
            row["successes"] += int(info.success)
            row["lengths"].append(info.num_samples)
            row["sources"].add(info.source)
        return {
            "path": str(path),
            "size_bytes": path.stat().st_size,
            "env_args": reader.env_args,
            "demos": len(reader.demos),
            "samples": int(reader.file["data"].attrs.get("total", 0)),
            "masks": {m: len(reader.mask(m)) for m in ("train", "valid")},
            "tasks": dict(per_task),
        }


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _info(args: argparse.Namespace, console: Console) -> int:
    s = summarize(args.file)
    ea = s["env_args"]
    h, w = ea["image_size"]
    successes = sum(t["successes"] for t in s["tasks"].values())
    console.print(f"[bold]{s['path']}[/bold]  {_human_size(s['size_bytes'])}")
    console.print(f"family {ea['family']}  camera {ea['camera']}  image {h}x{w}  horizon {ea.get('horizon')}  "
                  f"action_dim {ea.get('action_dim')}")
    console.print(f"{s['demos']} demos, {s['samples']} samples, success {successes}/{s['demos']}"
                  f" ({successes / max(s['demos'], 1):.0%}), masks train {s['masks']['train']} / valid {s['masks']['valid']}")
    table = Table("task", "hidden parameters", "demos", "success", "length (min/mean/max)", "source")
    for task_id, row in sorted(s["tasks"].items(), key=lambda kv: (kv[0].rsplit("/", 1)[0], int(kv[0].rsplit("/", 1)[1]))):
        lengths = row["lengths"]
        table.add_row(
            task_id,
            ", ".join(f"{k}={v:.3f}" for k, v in row["params"].items()),
            str(row["demos"]),
            f"{row['successes'] / row['demos']:.0%}",
            f"{min(lengths)}/{sum(lengths) / len(lengths):.1f}/{max(lengths)}",
            ",".join(sorted(row["sources"])),
        )
    console.print(table)
    return 0


def _validate(args: argparse.Namespace, console: Console) -> int:
    failed = 0
    for file in args.files:
        problems = validate(file)
        if problems:
            failed += 1
            for p in problems:
                print(f"error: {p}", file=sys.stderr)
        else:
            s = summarize(file)
            console.print(f"ok: {file}: {s['demos']} demos, {s['samples']} samples")
    return 1 if failed else 0


def _replay(args: argparse.Namespace, console: Console) -> int:
    from demos.replay import replay_demo, write_video

    with DemoReader(args.file) as reader:
        names = reader.demos if args.all else [args.demo]
    bad = 0
    for name in names:
        result, ep = replay_demo(args.file, name, args.mode)
        parts = [f"{name} ({result.steps} steps)"]
        if result.mismatched_frames is not None:
            exact = result.mismatched_frames == 0
            bad += not exact
            parts.append(f"from states: {result.steps - result.mismatched_frames}/{result.steps} frames identical"
                         f" (max pixel diff {result.max_pixel_diff})" + ("" if exact else " [NOT EXACT]"))
        if result.max_state_divergence is not None:
            parts.append(f"from actions: max state divergence {result.max_state_divergence:.3g}, final proprio divergence "
                         f"{result.final_proprio_divergence:.3g}, success stored {result.stored_success} / replayed {result.replayed_success}")
        console.print("; ".join(parts))
        if args.video:
            video = Path(args.video)
            if len(names) > 1:
                video = video.with_name(f"{video.stem}_{name}{video.suffix or '.mp4'}")
            console.print(f"video: {write_video(video, ep, result)}")
    return 1 if bad else 0


def _merge(args: argparse.Namespace, console: Console) -> int:
    n = merge(args.inputs, args.output, exclude=args.exclude)
    console.print(f"wrote {n} demos to {args.output}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vgmps demos", description="inspect, validate, replay and merge demo files")
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="counts per task, success rate, lengths, file size")
    info.add_argument("file")
    val = sub.add_parser("validate", help="schema and content checks; exits 1 on any problem")
    val.add_argument("files", nargs="+")
    rep = sub.add_parser("replay", help="re-simulate from states (exact images) and from actions (divergence)")
    rep.add_argument("file")
    which = rep.add_mutually_exclusive_group()
    which.add_argument("--demo", default="demo_0")
    which.add_argument("--all", action="store_true", help="replay every demo")
    rep.add_argument("--mode", choices=("states", "actions", "both"), default="both")
    rep.add_argument("--video", help="write an MP4 (stored | replayed-from-actions side by side)")
    mer = sub.add_parser("merge", help="concatenate files, renumbering demos; --exclude drops demos")
    mer.add_argument("output")
    mer.add_argument("inputs", nargs="+")
    mer.add_argument("--exclude", action="append", default=[], help="demo_3 (any input) or PATH:demo_3; repeatable")
    return p


def demos_main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    console = Console()
    handlers = {"info": _info, "validate": _validate, "replay": _replay, "merge": _merge}
    try:
        return handlers[args.command](args, console)
    except DemoFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
