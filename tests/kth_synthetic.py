"""Synthetic KTH-format videos for the tests: a bright block crossing a dark frame, written as the
official ``personNN_ACTION_dS_uncomp.avi`` files are (grey, 25 fps, uncompressed), so the kth plugin
reads them exactly as it reads the real ones. The KTH videos themselves are not bundled."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np


def blob_video(xs: list[float], height: int = 60, width: int = 80, noise: float = 0.0) -> np.ndarray:
    """A bright 12×20 block at the given left edges over a dark background, uint8 [T, H, W]."""
    rng = np.random.default_rng(0)
    frames = np.full((len(xs), height, width), 20.0)
    for t, x in enumerate(xs):
        frames[t, 20:40, int(x) : int(x) + 12] = 220.0
    frames += rng.normal(0, noise, frames.shape)
    return np.clip(frames, 0, 255).astype(np.uint8)


def write_avi(path: Path, frames: np.ndarray) -> None:
    """Grey frames ``[T, H, W]`` as a lossless rawvideo .avi at 25 fps, as KTH's ``*_uncomp.avi``."""
    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=25, codec="rawvideo", pix_fmt_in="gray", pix_fmt_out="gray",
        macro_block_size=1, ffmpeg_log_level="error",
    )  # fmt: skip
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
