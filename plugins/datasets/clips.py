"""What the video data sets (kth, tacos, folder) share: option checks, caption normalisation,
streaming decoding, sliding frame windows, and the skip reasons they count."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from t2vkit.errors import DataError, T2VError
from t2vkit.video_io import iter_frames

VIDEO_MISSING = "video file missing"
VIDEO_UNREADABLE = "video file unreadable"


def check_clip_options(name: str, frames: int, size: int, channels: int, stride: int | None = None) -> None:
    """Refuse clip options that cannot give a clip, before any video is decoded."""
    if frames < 1 or size < 1:
        raise DataError(f"{name}: frames and size must be at least 1, got frames={frames} size={size}")
    if channels not in (1, 3):
        raise DataError(f"{name}: channels must be 1 (grey) or 3 (RGB), got {channels}")
    if stride is not None and stride < 1:
        raise DataError(f"{name}: stride must be at least 1, got {stride}")


class DecodeError(Exception):
    """ffmpeg could not decode a video: the builders count it as skipped rather than stopping."""


def decode(path: Path, size: int, channels: int) -> Iterator[np.ndarray]:
    """Stream ``path`` as chunks of frames resized by ffmpeg to ``size``×``size``.

    Decoding failures come as :class:`DecodeError`, so that a caller can tell them apart from its
    own errors. Close the generator to stop ffmpeg early.
    """
    try:
        yield from iter_frames(path, (size, size), channels)
    except T2VError as exc:
        raise DecodeError(str(exc)) from exc


def normalise_caption(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed, so that captions differing only in
    case or punctuation ("The person cuts an onion." / "the person cuts an onion") share a bucket.
    Apostrophes are dropped ("person's" → "persons"); other punctuation separates words. A
    caption of punctuation only is kept as it is (stripped) rather than made empty."""
    words = re.sub(r"[^\w\s]", " ", re.sub(r"['’]", "", text.lower())).split()
    return " ".join(words) or text.strip()


def sliding_windows(
    chunks: Iterable[np.ndarray], length: int, stride: int, limit: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Cut windows of ``length`` frames, one every ``stride`` frames, from a stream of frame chunks.

    Yields ``(index of the window's first frame, clip [length, H, W, C])``. Only the last
    ``length`` frames are held, so a long video never sits in memory whole; after ``limit``
    windows it stops reading. A stream shorter than ``length`` yields nothing.
    """
    recent: deque[np.ndarray] = deque(maxlen=length)
    next_start, emitted, index = 0, 0, 0
    for chunk in chunks:
        for frame in chunk:
            recent.append(frame)
            if index - length + 1 == next_start:
                yield next_start, np.stack(recent)
                emitted += 1
                if limit is not None and emitted >= limit:
                    return
                next_start += stride
            index += 1
