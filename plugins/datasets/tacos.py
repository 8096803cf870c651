"""TACoS: cooking videos with short sentences saying what happens ("He took out a pan").

The annotations are the 2D-TAN moment-localisation splits of TACoS (Regneri et al. 2013):
``train.json``, ``val.json`` and ``test.json``, each mapping a video name (``s27-d50.avi``) to
``timestamps`` ([start_frame, end_frame] pairs at 29.4 fps), one sentence per pair, ``fps`` and
``num_frames``. The videos (MPII Cooking Composites) are the user's; frame indices are used as
they are, so the videos must keep their original frame rate. 48 intervals end a few frames past
``num_frames``; they are cut at the last frame.

Each (interval, sentence) pair gives one clip: ``frames`` frames sampled uniformly over the
interval. The caption is the sentence; the bucket is the sentence normalised (lower case, no
punctuation), so the many videos described by the same words share one. Each video is decoded
once, as a stream, keeping only the frames of the clips in progress.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from t2vkit.errors import DataError
from t2vkit.interfaces import ClipSink, DatasetBuilder

from .clips import VIDEO_MISSING, VIDEO_UNREADABLE, DecodeError, check_clip_options, decode, normalise_caption

SPLITS = ("train", "val", "test")
PAST_THE_END = "interval past the end of the decoded video"
HOW_TO_ANNOTATIONS = "pass --annotations DIR, a folder with the 2D-TAN train.json, val.json and test.json"
HOW_TO_VIDEOS = "pass --videos DIR, a folder with the TACoS videos named as in the annotations (sXX-dYY.avi)"


@dataclass
class TacosConfig:
    annotations: Path | None = None  # folder with the 2D-TAN train.json, val.json, test.json
    videos: Path | None = None  # folder with the sXX-dYY.avi videos
    frames: int = 16
    size: int = 64
    channels: int = 3


@dataclass(frozen=True)
class Moment:
    """One (interval, sentence) pair; ``start`` and ``end`` are inclusive frame indices."""

    split: str
    video: str
    start: int
    end: int
    sentence: str


def parse_annotations(data: Any, split: str, source: str) -> list[Moment]:
    """The moments of one 2D-TAN split file (already loaded from JSON), ends cut at the last frame."""
    if not isinstance(data, dict):
        raise DataError(f"{source}: expected an object mapping video names to annotations")
    moments = []
    for video, entry in data.items():
        try:
            timestamps, sentences = entry["timestamps"], entry["sentences"]
            num_frames = int(entry["num_frames"])
        except (TypeError, KeyError, ValueError):
            raise DataError(f"{source}: {video} needs timestamps, sentences and num_frames") from None
        if len(timestamps) != len(sentences):
            raise DataError(f"{source}: {video} has {len(timestamps)} intervals, {len(sentences)} sentences")
        for (start, end), sentence in zip(timestamps, sentences, strict=True):
            start, end = int(start), min(int(end), num_frames - 1)
            if not 0 <= start <= end:
                raise DataError(f"{source}: {video} interval [{start}, {end}] is empty or outside its "
                                f"{num_frames} frames")  # fmt: skip
            if not str(sentence).strip():
                raise DataError(f"{source}: {video} has an empty sentence for interval [{start}, {end}]")
            moments.append(Moment(split, video, start, end, str(sentence).strip()))
    return moments


def read_annotations(folder: Path) -> list[Moment]:
    """The moments of ``folder``'s train, val and test files, in file order."""
    moments = []
    for split in SPLITS:
        path = folder / f"{split}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON: {exc}") from None
        moments += parse_annotations(data, split, str(path))
    return moments


def sample_indices(start: int, end: int, count: int) -> np.ndarray:
    """``count`` frame indices spread evenly from ``start`` to ``end`` (short intervals repeat frames)."""
    return np.linspace(start, end, count).round().astype(np.int64)


def gather_frames(
    chunks: Iterable[np.ndarray], requests: Sequence[np.ndarray]
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Collect, from a stream of frame chunks, the frames each request (an array of frame indices) names.

    Yields ``(request number, clip)`` as soon as a request's last frame has gone by, so only the
    clips in progress are held, and stops reading once every request is served. Requests that
    reach past the end of the stream come last, with None.
    """
    wanted: dict[int, list[tuple[int, int]]] = defaultdict(list)  # frame → [(request, position)]
    for number, indices in enumerate(requests):
        for position, frame in enumerate(indices):
            wanted[int(frame)].append((number, position))
    remaining = [len(indices) for indices in requests]
    clips: dict[int, np.ndarray] = {}
    index = 0
    for chunk in chunks:
        for frame in chunk:
            for number, position in wanted.pop(index, ()):
                if number not in clips:
                    clips[number] = np.empty((len(requests[number]), *frame.shape), frame.dtype)
                clips[number][position] = frame
                remaining[number] -= 1
                if remaining[number] == 0:
                    yield number, clips.pop(number)
            index += 1
            if not wanted:
                return
    for number, left in enumerate(remaining):
        if left:
            yield number, None


class Tacos(DatasetBuilder):
    Config = TacosConfig
    version = "1"

    def __init__(self, config: TacosConfig) -> None:
        super().__init__(config)
        check_clip_options("tacos", config.frames, config.size, config.channels)

    def _annotations(self) -> Path:
        if self.config.annotations is None:
            raise DataError(f"tacos needs its annotations: {HOW_TO_ANNOTATIONS}")
        return Path(self.config.annotations)

    def _videos(self) -> Path:
        if self.config.videos is None:
            raise DataError(f"tacos needs the videos: {HOW_TO_VIDEOS}")
        return Path(self.config.videos)

    def sources(self) -> dict[str, Path]:
        files = {split: self._annotations() / f"{split}.json" for split in SPLITS}
        for path in files.values():
            if not path.is_file():
                raise DataError(f"TACoS annotation file not found: {path}; {HOW_TO_ANNOTATIONS}")
        videos = self._videos()
        if not videos.is_dir():
            raise DataError(f"TACoS video folder not found: {videos}; {HOW_TO_VIDEOS}")
        return {**files, "videos": videos}

    def build(self, sink: ClipSink) -> None:
        moments = read_annotations(self._annotations())
        by_video: dict[str, list[Moment]] = defaultdict(list)
        for moment in moments:
            by_video[moment.video].append(moment)
        folder = self._videos()
        if not any((folder / video).is_file() for video in by_video):
            examples = ", ".join(sorted(by_video)[:3])
            raise DataError(f"no TACoS video found in {folder}: expected the annotated ones, {examples}, ...")

        sink.start("tacos", len(moments))
        for video, items in by_video.items():
            if (folder / video).is_file():
                self._add_video(sink, folder / video, items)
            else:
                for _ in items:
                    sink.skip(VIDEO_MISSING)
                sink.advance(len(items))

    def _add_video(self, sink: ClipSink, path: Path, moments: list[Moment]) -> None:
        """Decode ``path`` once and add a clip per moment; moments it cannot serve are skipped."""
        cfg = self.config
        requests = [sample_indices(m.start, m.end, cfg.frames) for m in moments]
        served = 0
        with contextlib.closing(decode(path, cfg.size, cfg.channels)) as stream:
            try:
                for number, clip in gather_frames(stream, requests):
                    served += 1
                    sink.advance()
                    if clip is None:
                        sink.skip(PAST_THE_END)
                        continue
                    m = moments[number]
                    attributes = {"video": m.video, "start": m.start, "end": m.end}
                    sink.add(clip, m.sentence, bucket=normalise_caption(m.sentence), split=m.split,
                             attributes=attributes, source=m.video)  # fmt: skip
            except DecodeError:
                for _ in range(len(moments) - served):
                    sink.skip(VIDEO_UNREADABLE)
                sink.advance(len(moments) - served)
