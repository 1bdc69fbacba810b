"""Videos and contact sheets a person can judge: a large camera view with the hidden goal drawn for the viewer.

The policy sees a 24x32 image with no goal in it; a reader of the report needs to see the
whole task and where the goal was. ``replay_views`` re-runs chosen evaluation episodes
(same task, same reset seed, same adapted parameters, policy mean) in one env that also
renders a ``size`` x ``size`` viewer camera with the family's goal markers (push: the goal
disc; door: where the handle would be at the target angle). The markers are drawn only into
the viewer image, never into the policy's observation. Captions state what a frame shows:
which step, success, and the final distance or angle error of the replayed episode itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from robot_envs import Task, TaskFamily
from robot_envs.rendering import FastCamera
from vision_gmps.policy import ConvGaussianPolicy, Params
from vision_gmps.rollouts import PolicyActor, episode_seed

CAPTION_HEIGHT = 34


@dataclass
class ViewedEpisode:
    frames: np.ndarray  # [T + 1, size, size, 3] uint8, goal drawn
    success: bool
    final: dict[str, float]  # final distance (m) / angle_error (deg), whichever the family reports
    task: Task


def replay_views(
    family: TaskFamily,
    policy: ConvGaussianPolicy,
    jobs: list[tuple[Task, Params, int]],
    size: int = 256,
    camera: str | None = None,
) -> list[ViewedEpisode]:
    """Run each (task, parameters, reset seed) episode with the policy mean; film it with the viewer camera."""
    env = family.make_env(jobs[0][0])
    try:
        film, close_view = _viewer_camera(env, size, camera)
        out = []
        for task, params, seed in jobs:
            env.task = task
            actor = PolicyActor(policy, [params], deterministic=True)
            obs, info = env.reset(seed=seed)
            frames = [film(obs)]
            for _ in range(env.horizon):
                batched = {k: v[None] for k, v in obs.items()}
                action = actor(batched, {}, np.zeros(1, dtype=int))[0]
                obs, _, _, _, info = env.step(np.clip(action, -1.0, 1.0))
                frames.append(film(obs))
            final = {k: float(info[k]) for k in family.step_metrics if k in info}
            out.append(ViewedEpisode(np.stack(frames), bool(info["success"]), final, task))
        close_view()
        return out
    finally:
        env.close()


def _viewer_camera(env, size: int, camera: str | None):
    """(film(obs) -> frame, close): the best view this env offers, from the richest to the plainest.

    1. ``env.render_view(size, camera)``: a family's own viewer image (optional env contract,
       ``robot_envs/base.py``), the hidden parameter drawn for the viewer only;
    2. our robosuite families: a second, larger fast camera with their goal markers;
    3. ``point``: its own picture, scaled up; any other family: the policy's image, scaled up
       (nothing hidden is drawn then, and the caption's success and final error tell the story).
    """
    if callable(getattr(env, "render_view", None)):
        return (lambda obs: env.render_view(size, camera)), (lambda: None)
    if hasattr(env, "model") and hasattr(env, "_goal_markers") and hasattr(env, "camera"):
        model = env.model
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), size)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), size)
        view = FastCamera(model, camera or env.camera, size, size)
        return (lambda obs: view.render(env.data, env._goal_markers())), view.close
    if not hasattr(env, "model") and callable(getattr(env, "render", None)):
        return (lambda obs: _scale_to(env.render(), size)), (lambda: None)
    return (lambda obs: _scale_to(obs["image"], size)), (lambda: None)


def _scale_to(image: np.ndarray, size: int) -> np.ndarray:
    factor = max(1, size // max(image.shape[:2]))
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def eval_reset_seed(eval_seed: int, task_position: int, eval_episodes: int, start: int = 0) -> int:
    """The reset seed ``Sampler.collect`` gave evaluation start ``start`` of the task at ``task_position``."""
    return episode_seed(eval_seed, task_position * eval_episodes + start)


def describe(episode: ViewedEpisode) -> str:
    parts = ["SUCCESS" if episode.success else "failed"]
    if "distance" in episode.final:
        parts.append(f"final distance {100 * episode.final['distance']:.1f} cm")
    if "angle_error" in episode.final:
        target = episode.task.params.get("target_angle")
        parts.append((f"target {np.rad2deg(target):.0f} deg, " if target is not None else "")
                     + f"final error {episode.final['angle_error']:.1f} deg")
    return ", ".join(parts)


def caption(frames: np.ndarray, lines: list[str]) -> np.ndarray:
    """Frames with a dark strip on top carrying ``lines`` of text."""
    strip = Image.new("RGB", (frames.shape[2], CAPTION_HEIGHT), (20, 20, 20))
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default(size=12)
    for i, line in enumerate(lines):
        draw.text((4, 2 + 15 * i), line, fill=(235, 235, 235), font=font)
    top = np.broadcast_to(np.asarray(strip), (frames.shape[0], CAPTION_HEIGHT, frames.shape[2], 3))
    return np.concatenate([top, frames], axis=1)


def before_after_clip(before: ViewedEpisode, after: ViewedEpisode, steps: int) -> np.ndarray:
    """Captioned side-by-side clip: left before adaptation, right after ``steps`` steps."""
    left = caption(before.frames, [f"{before.task.task_id}: before adaptation (step 0)", describe(before)])
    right = caption(after.frames, [f"{after.task.task_id}: after {steps} step{'s' if steps != 1 else ''}", describe(after)])
    gap = np.full((left.shape[0], left.shape[1], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([left, gap, right], axis=2)


def contact_sheet(episodes: list[ViewedEpisode], path: Path, title: str, columns: int = 3) -> Path:
    """PNG grid of each episode's last frame, captioned with its task and outcome."""
    tiles = [caption(e.frames[-1:], [e.task.task_id, describe(e)])[0] for e in episodes]
    h, w, _ = tiles[0].shape
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * w + (columns - 1) * 4, rows * h + (rows - 1) * 4 + 20), (255, 255, 255))
    ImageDraw.Draw(sheet).text((4, 4), title, fill=(0, 0, 0))
    for i, tile in enumerate(tiles):
        sheet.paste(Image.fromarray(tile), ((i % columns) * (w + 4), 20 + (i // columns) * (h + 4)))
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(path, np.asarray(sheet))
    return path
