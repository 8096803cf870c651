"""folder: any folder of captioned videos, which is how users bring their own data.

``DIR/captions.csv`` has a header row naming ``path`` and ``caption`` and, optionally, ``bucket``
and ``split``, then one row per (video, caption); ``path`` is relative to DIR, and a video with
several captions gets one row each. The caption is used as written. The bucket defaults to the
normalised caption (lower case, no punctuation), so videos described by the same words share one.
A video without a ``split`` goes to train, val or test as a whole, drawn with ``seed`` in the
proportions ``val_fraction`` / ``test_fraction``, so no video is split across splits.

Each video is decoded once, as a stream, and cut into ``frames``-frame clips every ``stride``
frames (``max_clips_per_video`` at most), resized to ``size``×``size`` without cropping.
"""

from __future__ import annotations

import contextlib
import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t2vkit.errors import DataError
from t2vkit.interfaces import ClipSink, DatasetBuilder

from .clips import (
    VIDEO_MISSING,
    VIDEO_UNREADABLE,
    DecodeError,
    check_clip_options,
    decode,
    normalise_caption,
    sliding_windows,
)

CAPTIONS_FILE = "captions.csv"
SPLITS = ("train", "val", "test")
COLUMNS = "path,caption[,bucket][,split]"


@dataclass
class FolderConfig:
    videos: Path | None = None  # the folder of videos, holding captions.csv
    captions: Path | None = None  # the captions file; default VIDEOS/captions.csv
    frames: int = 16
    size: int = 64
    channels: int = 3
    stride: int = 16  # frames between the starts of consecutive clips of one video
    max_clips_per_video: int | None = None
    val_fraction: float = 0.1  # of the videos without a split column value
    test_fraction: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class CaptionRow:
    line: int  # in captions.csv, for error messages
    path: str
    caption: str
    bucket: str
    split: str | None  # None: drawn per video


def read_captions(path: Path) -> list[CaptionRow]:
    """The rows of a captions file, checked: every row needs a path, a caption and a known split."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None:
                raise DataError(f"{path} line 1: the file is empty; it needs a header {COLUMNS}")
            reader.fieldnames = [name.strip().lower() for name in reader.fieldnames]
            for column in ("path", "caption"):
                if column not in reader.fieldnames:
                    raise DataError(f"{path} line 1: no {column} column; the header must be {COLUMNS}")
            rows = [_parse_row(record, path, reader.line_num) for record in reader]
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows:
        raise DataError(f"{path} lists no videos; add rows of {COLUMNS} under its header")
    return rows


def _parse_row(record: dict[str, str | None], path: Path, line: int) -> CaptionRow:
    def field(name: str) -> str:
        return (record.get(name) or "").strip()

    if not field("path"):
        raise DataError(f"{path} line {line}: empty path")
    caption = field("caption")
    if not caption:
        raise DataError(f"{path} line {line}: empty caption for {field('path')}")
    split = field("split").lower() or None
    if split is not None and split not in SPLITS:
        raise DataError(f"{path} line {line}: unknown split {field('split')!r} (use train, val or test, "
                        "or leave it empty to have it drawn)")  # fmt: skip
    return CaptionRow(line, field("path"), caption, field("bucket") or normalise_caption(caption), split)


def draw_splits(videos: Sequence[str], val_fraction: float, test_fraction: float,
                seed: int) -> dict[str, str]:  # fmt: skip
    """A split per video: a seeded shuffle of the sorted names, the first ones to test, then val.

    It depends only on the set of names and the seed, not on the order of the rows.
    """
    names = sorted(videos)
    order = np.random.default_rng(seed).permutation(len(names))
    n_test = round(test_fraction * len(names))
    n_val = round(val_fraction * len(names))
    splits = ["test"] * n_test + ["val"] * n_val + ["train"] * (len(names) - n_test - n_val)
    return {names[i]: split for i, split in zip(order, splits, strict=True)}


def video_splits(rows_by_video: dict[str, list[CaptionRow]], source: Path, val_fraction: float,
                 test_fraction: float, seed: int) -> dict[str, str]:  # fmt: skip
    """The split of every video: the one its rows name (they must agree), else drawn."""
    given: dict[str, str] = {}
    for video, rows in rows_by_video.items():
        named = {row.split: row for row in rows if row.split}
        if len(named) > 1:
            lines = ", ".join(str(row.line) for row in named.values())
            raise DataError(f"{source} lines {lines}: {video} is given different splits; "
                            "a video belongs to one")  # fmt: skip
        if named:
            given[video] = next(iter(named))
    drawn = draw_splits([v for v in rows_by_video if v not in given], val_fraction, test_fraction, seed)
    return {**drawn, **given}


class Folder(DatasetBuilder):
    Config = FolderConfig
    version = "1"

    def __init__(self, config: FolderConfig) -> None:
        super().__init__(config)
        check_clip_options("folder", config.frames, config.size, config.channels, config.stride)
        if config.max_clips_per_video is not None and config.max_clips_per_video < 1:
            raise DataError(f"folder: max_clips_per_video must be >= 1, got {config.max_clips_per_video}")
        fractions = (config.val_fraction, config.test_fraction)
        if min(fractions) < 0 or sum(fractions) > 1:
            raise DataError(f"folder: val_fraction and test_fraction must be >= 0 and add up to at most 1, "
                            f"got {config.val_fraction} and {config.test_fraction}")  # fmt: skip

    def _folder(self) -> Path:
        if self.config.videos is None:
            raise DataError(f"folder needs --videos DIR, a folder of videos with {CAPTIONS_FILE} ({COLUMNS})")
        return Path(self.config.videos)

    def _captions(self) -> Path:
        return Path(self.config.captions) if self.config.captions else self._folder() / CAPTIONS_FILE

    def sources(self) -> dict[str, Path]:
        folder, captions = self._folder(), self._captions()
        if not folder.is_dir():
            raise DataError(f"video folder not found: {folder}; pass --videos DIR, a folder of videos "
                            f"with a {CAPTIONS_FILE}")  # fmt: skip
        if not captions.is_file():
            raise DataError(f"captions file not found: {captions}; write it with a header {COLUMNS} "
                            "and a row per video (path relative to the folder), or pass "
                            "-o captions=FILE")  # fmt: skip
        return {"captions": captions, "videos": folder}

    def build(self, sink: ClipSink) -> None:
        cfg, source = self.config, self._captions()
        rows_by_video: dict[str, list[CaptionRow]] = defaultdict(list)
        for row in read_captions(source):
            rows_by_video[row.path].append(row)
        splits = video_splits(rows_by_video, source, cfg.val_fraction, cfg.test_fraction, cfg.seed)

        sink.start("folder", len(rows_by_video))
        for video, rows in rows_by_video.items():
            path = self._folder() / video
            if path.is_file():
                self._add_video(sink, path, video, rows, splits[video])
            else:
                for _ in rows:
                    sink.skip(VIDEO_MISSING)
            sink.advance()

    def _add_video(self, sink: ClipSink, path: Path, video: str, rows: list[CaptionRow], split: str) -> None:
        """Decode ``path`` once; every clip goes in once per caption row. Skips count per row."""
        cfg = self.config
        added, reason = 0, None
        try:
            with contextlib.closing(decode(path, cfg.size, cfg.channels)) as stream:
                for start, clip in sliding_windows(stream, cfg.frames, cfg.stride, cfg.max_clips_per_video):
                    for row in rows:
                        sink.add(clip, row.caption, bucket=row.bucket, split=split, source=video,
                                 attributes={"video": video, "start": start})  # fmt: skip
                    added += 1
        except DecodeError:
            reason = VIDEO_UNREADABLE
        if reason is None and added == 0:
            reason = f"video shorter than {cfg.frames} frames"
        for _ in rows if reason else ():
            sink.skip(reason)
