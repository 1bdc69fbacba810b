"""Re-simulate stored demos: from states (must reproduce the stored images exactly) and from actions.

Replaying from states checks that a file is self-contained: the env rebuilt from
``env_args`` and set to ``states[t]`` renders ``obs/<camera>_image[t]`` bit for bit.
Replaying from actions starts at ``states[0]`` and executes ``actions``; any drift
(controller state, contact solver, float non-determinism) shows up as state divergence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from demos.collect import rebuild_family
from demos.hdf5 import DemoFileError, DemoReader, Episode
from robot_envs.base import require_replay

MODES = ("states", "actions", "both")


@dataclass
class ReplayResult:
    demo: str
    steps: int
    stored_success: bool
    mismatched_frames: int | None = None  # from states: frames whose image differs from the stored one
    max_pixel_diff: int | None = None
    max_state_divergence: float | None = None  # from actions: max |state - stored state| over steps
    final_proprio_divergence: float | None = None
    replayed_success: bool | None = None
    frames_from_actions: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def states_exact(self) -> bool | None:
        return None if self.mismatched_frames is None else self.mismatched_frames == 0


def _observe_at(env: Any, state: np.ndarray) -> np.ndarray:
    """Set the sim state and return the image rendered there (``set_sim_state`` returns (obs, info))."""
    out = env.set_sim_state(state)
    obs = out[0] if isinstance(out, tuple) else out
    if isinstance(obs, dict) and "image" in obs:
        return np.asarray(obs["image"])
    return np.asarray(env.render())


def replay_from_states(env: Any, ep: Episode, result: ReplayResult) -> None:
    diffs = []
    for t in range(ep.num_samples):
        image = _observe_at(env, ep.states[t])
        diffs.append(int(np.abs(image.astype(np.int16) - ep.obs["image"][t].astype(np.int16)).max()))
    result.mismatched_frames = int(sum(d > 0 for d in diffs))
    result.max_pixel_diff = max(diffs)


def replay_from_actions(env: Any, ep: Episode, result: ReplayResult) -> None:
    frames = [_observe_at(env, ep.states[0])]
    divergence = 0.0
    info: dict[str, Any] = {}
    for t in range(ep.num_samples):
        obs, _r, _term, _trunc, info = env.step(ep.actions[t])
        frames.append(np.asarray(obs["image"]))
        if t + 1 < ep.num_samples:
            divergence = max(divergence, float(np.abs(np.asarray(env.get_sim_state()).ravel() - ep.states[t + 1]).max()))
    result.max_state_divergence = divergence
    result.final_proprio_divergence = float(np.abs(np.asarray(obs["proprio"], np.float64) - ep.obs["proprio"][-1]).max())
    result.replayed_success = bool(info.get("success", False))
    result.frames_from_actions = frames


def replay_demo(path: str | Path, demo: str, mode: str = "both") -> tuple[ReplayResult, Episode]:
    if mode not in MODES:
        raise ValueError(f"unknown replay mode {mode!r}; use one of {MODES}")
    with DemoReader(path) as reader:
        env_args = reader.env_args
        ep = reader.episode(demo)
    if env_args.get("deploy", {}).get("simulated") is False:
        raise DemoFileError(f"{path}: recorded on a real arm ({env_args['deploy'].get('robot', {}).get('robot')}); there is "
                            "no simulator state to replay. `vgmps demos info` and `validate` work on it")
    family = rebuild_family(env_args)
    env = family.make_env(ep.task)
    try:
        require_replay(env, "vgmps demos replay")
        env.task = ep.task
        env.reset(seed=ep.seed)
        result = ReplayResult(demo=demo, steps=ep.num_samples, stored_success=ep.success)
        if mode in ("states", "both"):
            replay_from_states(env, ep, result)
        if mode in ("actions", "both"):
            env.reset(seed=ep.seed)
            replay_from_actions(env, ep, result)
    finally:
        env.close()
    return result, ep


def _upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def write_video(path: str | Path, ep: Episode, result: ReplayResult | None = None, fps: int = 10) -> Path:
    """MP4 of the stored images, side by side with the action replay when there is one."""
    import imageio.v2 as imageio

    stored = list(ep.obs["image"])
    replayed = result.frames_from_actions if result and result.frames_from_actions else None
    h = stored[0].shape[0]
    scale = 2 * max(1, round(128 / h))  # even size for yuv420p; small worlds become visible
    frames = []
    for t, img in enumerate(stored):
        row = [img] if replayed is None else [img, np.full((h, 2, 3), 255, np.uint8), replayed[min(t, len(replayed) - 1)]]
        frames.append(_upscale(np.concatenate(row, axis=1), scale))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=fps, macro_block_size=2)
    return path
