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

from demos.hdf5 import DemoFileError, DemoReader, format_problems, merge, validate
from robot_envs.errors import UserError

# ----------------------------------------------------------------------------- collect


# `vgmps collect` composes its hydra config in vision_gmps.collect (the CLI layer) and calls
# run_collect with the plain dict: demos/ imports nothing from vision_gmps/.
COLLECT_USAGE = ("usage: vgmps collect [hydra overrides]   e.g. env=point split=test demos_per_task=10 output=data/p.hdf5\n"
                 "keys: source (scripted|experts|keyboard|spacemouse) zoo (source=experts: an expert zoo folder) split num_tasks task_indices demos_per_task output noise seed\n"
                 "      append=true (or --append): add new episodes (fresh seeds) to an existing output file")


def run_collect(raw: dict[str, Any]) -> int:
    """``vgmps collect`` on a composed config (a plain dict); returns the exit code, errors printed."""
    try:
        return _collect(raw)
    except (UserError, RuntimeError, ValueError) as err:
        print(f"vgmps collect: error: {err}", file=sys.stderr)
        return 1


def _collect(raw: dict[str, Any]) -> int:
    from demos.collect import collect_scripted, select_tasks
    from robot_envs import make_family

    check_collect_settings(raw)
    output = Path(raw["output"])
    existing = 0
    if output.exists():
        with DemoReader(output) as reader:
            existing = len(reader.demos)
        if not raw.get("append"):
            raise UserError(f"{output} already exists ({existing} demos); add append=true (or --append) to add new "
                            f"episodes to it, or choose another output=")
    family = make_family(raw["env"]["family"], **raw["env"].get("kwargs", {}))
    split = raw["split"]
    num_tasks = raw["num_tasks"] if raw["num_tasks"] is not None else int(raw["env"]["tasks"][split])
    tasks = select_tasks(family, split, num_tasks, int(raw["env"]["tasks"]["seed"]), raw["task_indices"])
    if existing:
        print(f"appending to {output}, which already holds {existing} demos; new demos use reset seeds not in the file")
    if raw["source"] in ("scripted", "experts"):
        expert = None
        if raw["source"] == "experts":  # RL experts from `vgmps experts train`, checked before any episode
            from demos.rl.zoo import load_zoo_expert

            expert = load_zoo_expert(raw["zoo"], family, tasks)
        stats = collect_scripted(family, tasks, int(raw["demos_per_task"]), output, noise=float(raw["noise"]),
                                 seed=int(raw["seed"]), progress=bool(raw["progress"]), valid_every=int(raw["valid_every"]),
                                 expert=expert, source=raw["source"])
        verb = f"appended {stats.demos} new" if existing else f"wrote {stats.demos}"
        print(f"{verb} {raw['source']} demos for {len(tasks)} {split} tasks of {family.name} to {output} "
              f"(success {stats.successes}/{stats.demos} = {stats.success_rate:.0%})"
              + (f"; it now holds {existing + stats.demos} demos" if existing else ""))
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


def check_collect_settings(raw: dict[str, Any]) -> None:
    """Every numeric and categorical collect setting, before an env is built; names each bad key."""
    problems = []
    split, tasks = raw["split"], raw["env"]["tasks"]
    if split not in ("train", "test"):
        problems.append(f"split={split}: must be train or test")
    if raw["source"] not in ("scripted", "experts", "keyboard", "spacemouse"):
        problems.append(f"source={raw['source']}: must be scripted, experts, keyboard or spacemouse")
    if raw["source"] == "experts" and not raw.get("zoo"):
        problems.append("source=experts needs zoo=PATH (a folder from `vgmps experts train`)")
    for key, low in (("demos_per_task", 1), ("valid_every", 0), ("seed", 0)):
        if not isinstance(raw[key], int) or isinstance(raw[key], bool) or raw[key] < low:
            problems.append(f"{key}={raw[key]}: must be an integer >= {low}")
    if not isinstance(raw["noise"], (int, float)) or isinstance(raw["noise"], bool) or raw["noise"] < 0:
        problems.append(f"noise={raw['noise']}: must be a number >= 0")
    held = tasks.get(split) if split in ("train", "test") else None
    n = raw["num_tasks"]
    if held is not None and n is not None and (not isinstance(n, int) or not 1 <= n <= held):
        problems.append(f"num_tasks={n}: must be 1..{held}, the tasks of the {split} split (env.tasks.{split})")
    bad = [i for i in raw["task_indices"] or [] if not isinstance(i, int) or held is None or not 0 <= i < held]
    if bad:
        problems.append(f"task_indices={raw['task_indices']}: {bad} outside 0..{(held or 0) - 1} (env.tasks.{split}={held})")
    if problems:
        raise UserError("bad settings:\n  " + "\n  ".join(problems) if len(problems) > 1 else problems[0])


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
            print("error: " + format_problems(problems), file=sys.stderr)
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
    n = merge(args.inputs, args.output, exclude=args.exclude, force=args.force)
    console.print(f"wrote {n} demos to {args.output}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vgmps demos", description="inspect, validate, replay and merge demo files",
                                epilog="examples:\n  vgmps demos validate data/push.hdf5\n"
                                       "  vgmps demos merge data/all.hdf5 data/a.hdf5 data/b.hdf5 --exclude data/a.hdf5:demo_3\n"
                                       "  vgmps demos replay data/push.hdf5 --demo demo_0 --video demo0.mp4",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    mer.add_argument("--force", action="store_true", help="replace OUTPUT if it exists (refused otherwise)")
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
    except UserError as err:
        print(f"vgmps demos: error: {err}", file=sys.stderr)
        return 1
