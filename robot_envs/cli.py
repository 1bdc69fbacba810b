"""``vgmps envs show|compare FAMILY``: what the policy's camera sees.

``show`` writes a contact sheet and a short video. The contact sheet has one column per task: the top row is the policy's observation
(identical across tasks at the same state: the goal is hidden), the bottom row is the
debug view with the goal drawn where the family can draw it (push: a green disc).
The video plays random actions in the first task, debug view, upscaled.

``compare`` renders the same states with robosuite's renderer (left) and the fast
renderer (right), one row per state, to check that the fast image keeps what matters.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from robot_envs import available_families, make_family



def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vgmps envs", description=__doc__.splitlines()[0],
                                     epilog="examples:\n  vgmps envs show push --out docs/ --tasks 4\n"
                                            "  vgmps envs compare door --out docs/",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="write a contact sheet PNG and an MP4 of random actions")
    show.add_argument("family", help=f"one of {sorted(available_families())}, or package.module:Class")
    show.add_argument("--out", type=Path, default=Path("env_show"), help="output folder")
    show.add_argument("--tasks", type=int, default=6, help="number of train tasks on the contact sheet")
    show.add_argument("--split", default="train", choices=["train", "test"])
    show.add_argument("--seed", type=int, default=0, help="task-set seed")
    show.add_argument("--steps", type=int, default=None, help="video length (default: the family's horizon)")
    show.add_argument("--warmup", type=int, default=5, help="random steps before each contact-sheet image")
    show.add_argument("--camera", default=None, help="camera name (robosuite families)")
    show.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"))
    show.add_argument("--renderer", default=None, choices=["fast", "robosuite"], help="robosuite families only")
    show.add_argument("--scale", type=int, default=4, help="pixel upscaling of the video and sheet")
    compare = sub.add_parser("compare", help="robosuite's renderer next to the fast one, same states")
    compare.add_argument("family", help="push or door")
    compare.add_argument("--out", type=Path, default=Path("docs"), help="output folder")
    compare.add_argument("--states", type=int, default=3, help="rows: states after 0, 10, 20, ... random steps")
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--camera", default=None)
    compare.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"))
    compare.add_argument("--renderer", default=None, help=argparse.SUPPRESS)
    compare.add_argument("--scale", type=int, default=4)
    return parser


def _family_kwargs(args: argparse.Namespace) -> dict:
    kwargs: dict = {}
    if args.image_size is not None:
        kwargs["image_size"] = tuple(args.image_size)
    if args.family != "point":
        if args.camera is not None:
            kwargs["camera"] = args.camera
        if args.renderer is not None:
            kwargs["renderer"] = args.renderer
    elif args.camera is not None or args.renderer is not None:
        raise ValueError("--camera and --renderer apply to robosuite families only, not 'point'")
    return kwargs


def _debug_view(env) -> np.ndarray:
    if hasattr(env, "show_goal"):
        env.show_goal = True
        image = env.render()
        env.show_goal = False
        return image
    return env.render()


def _upscale(image: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def show(args: argparse.Namespace) -> tuple[Path, Path]:
    import imageio.v2 as imageio

    family = make_family(args.family, **_family_kwargs(args))
    tasks = family.sample(args.split, args.tasks, seed=args.seed)
    if not tasks:
        raise ValueError("--tasks must be at least 1")
    env = family.make_env(tasks[0])
    try:
        rng = np.random.default_rng(args.seed)
        columns = []
        for task in tasks:
            env.task = task
            env.reset(seed=args.seed)
            for _ in range(args.warmup):
                env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
            obs_image = env.step(np.zeros(env.action_space.shape, np.float32))[0]["image"]
            columns.append(np.concatenate([obs_image, _debug_view(env)], axis=0))
        gap = np.full((columns[0].shape[0], 2, 3), 255, np.uint8)
        sheet = np.concatenate([c for col in columns for c in (col, gap)][:-1], axis=1)
        args.out.mkdir(parents=True, exist_ok=True)
        sheet_path = args.out / f"{args.family}_tasks.png"
        imageio.imwrite(sheet_path, _upscale(sheet, args.scale))

        env.task = tasks[0]
        env.reset(seed=args.seed)
        frames = [_upscale(_debug_view(env), args.scale)]
        for _ in range(args.steps or family.horizon):
            env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
            frames.append(_upscale(_debug_view(env), args.scale))
        video_path = args.out / f"{args.family}_random.mp4"
        imageio.mimwrite(video_path, frames, fps=env.metadata.get("render_fps", 20), macro_block_size=1)
    finally:
        env.close()
    return sheet_path, video_path


def compare(args: argparse.Namespace) -> Path:
    """Same physics (fast controller in both), two renderers: every row is one state."""
    import imageio.v2 as imageio

    if args.family == "point":
        raise ValueError("compare needs a robosuite family (push or door); point has one renderer")
    kwargs = _family_kwargs(args)
    envs = [make_family(args.family, **kwargs, renderer=r).make_env() for r in ("robosuite", "fast")]
    try:
        rng = np.random.default_rng(args.seed)
        firsts = [env.reset(seed=args.seed)[0]["image"] for env in envs]
        rows = [firsts]
        for _ in range(args.states - 1):
            for _ in range(10):
                action = rng.uniform(-1, 1, envs[0].action_space.shape).astype(np.float32)
                images = [env.step(action)[0]["image"] for env in envs]
            rows.append(images)
    finally:
        for env in envs:
            env.close()
    gap = np.full((rows[0][0].shape[0], 2, 3), 255, np.uint8)
    sheet = np.concatenate([np.concatenate([left, gap, right], axis=1) for left, right in rows], axis=0)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.family}_renderers.png"
    imageio.imwrite(path, _upscale(sheet, args.scale))
    return path


def envs_main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        if args.command == "compare":
            print(f"wrote {compare(args)}")
            return 0
        sheet, video = show(args)
    except ValueError as err:
        print(f"vgmps envs: error: {err}")
        return 2
    print(f"wrote {sheet} and {video}")
    return 0
