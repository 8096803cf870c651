"""Reading and writing videos with the ffmpeg binary that imageio-ffmpeg ships.

Clips are uint8 arrays ``[T, H, W, C]`` with C = 1 (grey) or 3 (RGB) throughout t2vkit.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from t2vkit.errors import T2VError
from t2vkit.fsutil import atomic_path


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def iter_frames(
    path: str | Path, size: tuple[int, int] | None = None, channels: int = 3, chunk: int = 64
) -> Iterator[np.ndarray]:
    """Decode ``path`` frame by frame, resized by ffmpeg to ``size`` = (height, width).

    Yields uint8 arrays of up to ``chunk`` frames, ``[n, H, W, C]``. Without ``size`` the
    source size is kept (probed first).
    """
    path = Path(path)
    if not path.is_file():
        raise T2VError(f"video not found: {path}")
    if size is None:
        size = probe_size(path)
    height, width = size
    pix_fmt = {1: "gray", 3: "rgb24"}[channels]
    cmd = [_ffmpeg(), "-v", "error", "-nostdin", "-i", str(path), "-an", "-sn",
           "-vf", f"scale={width}:{height}:flags=area", "-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1"]  # fmt: skip
    frame_bytes = height * width * channels
    # ffmpeg's messages go to a file: a pipe nobody drains would stall a chatty decode.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
        assert proc.stdout is not None
        finished = False
        try:
            while True:
                buf = proc.stdout.read(frame_bytes * chunk)
                n = len(buf) // frame_bytes
                if n:
                    yield np.frombuffer(buf[: n * frame_bytes], np.uint8).reshape(n, height, width, channels)
                if len(buf) < frame_bytes * chunk:
                    break
            finished = True
        finally:
            proc.stdout.close()
            if not finished:  # the caller stopped early: no need to decode the rest
                proc.kill()
            code = proc.wait()
            log.seek(0)
            stderr = log.read().decode(errors="replace")
    if finished and code != 0:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {code}"
        raise T2VError(f"cannot decode {path}: {last}")


def read_video(path: str | Path, size: tuple[int, int] | None = None, channels: int = 3) -> np.ndarray:
    """The whole video as uint8 ``[T, H, W, C]``."""
    chunks = list(iter_frames(path, size, channels))
    if not chunks:
        h, w = size or (0, 0)
        return np.zeros((0, h, w, channels), np.uint8)
    return np.concatenate(chunks)


def probe_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of a video's first stream."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
    except (RuntimeError, StopIteration, OSError) as exc:
        raise T2VError(f"cannot read video {path}: {exc}") from None
    finally:
        reader.close()
    width, height = meta["size"]
    return int(height), int(width)


def _as_rgb(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise T2VError(f"frames must be uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise T2VError(f"frames must be [T, H, W, 1 or 3], got shape {tuple(frames.shape)}")
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so 64×64 clips are easy to look at."""
    if factor <= 1:
        return frames
    return frames.repeat(factor, axis=1).repeat(factor, axis=2)


def write_mp4(path: str | Path, frames: np.ndarray, fps: int = 8, quality: int = 8) -> Path:
    """Encode ``frames`` as H.264 (yuv420p, playable everywhere), atomically.

    H.264 with 4:2:0 chroma needs even frame sizes; an odd size is refused rather than letting
    the encoder write an empty file.
    """
    import imageio_ffmpeg

    frames = _as_rgb(frames)
    t, h, w, _ = frames.shape
    if t == 0:
        raise T2VError("cannot write a video with no frames")
    if h % 2 or w % 2:
        raise T2VError(f"H.264 needs even frame sizes, got {h}×{w}; resize or pad the frames")
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=quality,
            macro_block_size=1, output_params=["-f", "mp4"], ffmpeg_log_level="error",
        )  # fmt: skip
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        if tmp.stat().st_size == 0:
            raise T2VError(f"ffmpeg wrote an empty file for {path}")
    return path


def write_gif(path: str | Path, frames: np.ndarray, fps: int = 8) -> Path:
    from PIL import Image

    frames = _as_rgb(frames)
    images = [Image.fromarray(f) for f in frames]
    path = Path(path)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=round(1000 / fps), loop=0)  # fmt: skip
    return path


def contact_sheet(videos: Sequence[np.ndarray], pad: int = 2) -> np.ndarray:
    """One image with a row of frames per video: ``[rows*(H+pad), T*(W+pad), 3]`` uint8."""
    videos = [_as_rgb(v) for v in videos]
    t, h, w, _ = videos[0].shape
    sheet = np.full((len(videos) * (h + pad) + pad, t * (w + pad) + pad, 3), 255, np.uint8)
    for row, video in enumerate(videos):
        if video.shape != videos[0].shape:
            raise T2VError("all videos of a contact sheet must have the same shape")
        for col, frame in enumerate(video):
            y, x = pad + row * (h + pad), pad + col * (w + pad)
            sheet[y : y + h, x : x + w] = frame
    return sheet


def tile_videos(videos: Sequence[np.ndarray], columns: int, pad: int = 2) -> np.ndarray:
    """Lay equal-shaped videos out on a grid, ``columns`` per row: one video ``[T, H', W', 3]``.

    Sizes stay even (H.264 needs them) as long as the frames' sizes and ``pad`` are even.
    """
    videos = [_as_rgb(v) for v in videos]
    t, h, w, _ = videos[0].shape
    rows = -(-len(videos) // columns)
    grid = np.full((t, rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for i, video in enumerate(videos):
        if video.shape != videos[0].shape:
            raise T2VError("all videos of a grid must have the same shape")
        y, x = pad + (i // columns) * (h + pad), pad + (i % columns) * (w + pad)
        grid[:, y : y + h, x : x + w] = video
    return grid


def write_png(path: str | Path, image: np.ndarray) -> Path:
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, np.uint8)).save(tmp, format="PNG")
    return path
