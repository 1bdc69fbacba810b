"""Episode frames to MP4: small policy images are upscaled so a person can see them."""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

# imageio-ffmpeg starts ffmpeg with preexec_fn=os.setpgrp, which forces a full fork(); a process
# holding many MuJoCo GL contexts (20 push envs) commits enough memory that the kernel refuses
# that fork with ENOMEM. Without preexec_fn, Python spawns ffmpeg with vfork, which copies nothing.
os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")


def upscale(frames: np.ndarray, min_height: int = 192) -> np.ndarray:
    """Nearest-neighbour upscale of [T, H, W, 3] frames to at least ``min_height`` pixels high."""
    factor = max(1, int(np.ceil(min_height / frames.shape[1])))
    frames = frames.repeat(factor, axis=1).repeat(factor, axis=2)
    # H.264 wants even sizes.
    return frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, upscale(frames), fps=fps, macro_block_size=1)
    return path
