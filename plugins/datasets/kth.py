"""KTH human actions: walking, jogging and running, captioned "person 2 is walking left to right".

KTH (Schuldt, Laptev and Caputo, ICPR 2004) films 25 persons doing six actions in four scenarios
(d1 outdoors, d2 outdoors with scale changes, d3 outdoors in other clothes, d4 indoors), 160×120
grey at 25 fps, one ``personNN_ACTION_dS_uncomp.avi`` per person, action and scenario. The official
``00sequences.txt`` cuts each video into about four subsequences (1-based, inclusive frame ranges)
and its header gives the person split used here (train 11–18; val 19–21, 23–25, 01, 04; test 22,
02, 03, 05–10). Only walking, jogging and running cross the frame, so only they are kept.

No annotation says which way a person goes, so the direction is measured from each subsequence:
the moving pixels of consecutive frame differences, their horizontal centroid per frame pair, and
the sign of a robust (Theil–Sen) line through those centroids. A subsequence with too little
motion to tell is skipped and counted. The bucket is the caption, person × action × direction
(150 possible).

Each subsequence is cut into ``frames``-frame clips every ``stride`` frames, resized to
``size``×``size`` without cropping. With stride 1 the three actions give 24371/22946/25174
train/val/test clips on the header's split (counted from the sequences file); Table A.1 of the
paper reports 21030/5502/6650, which no stride reproduces. The default stride 4 gives about a
quarter as many.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t2vkit.errors import DataError, T2VError
from t2vkit.interfaces import ClipSink, DatasetBuilder
from t2vkit.video_io import read_video

from .clips import VIDEO_MISSING, VIDEO_UNREADABLE, check_clip_options, sliding_windows

ACTIONS = ("walking", "jogging", "running")
SEQUENCES_FILE = "00sequences.txt"
VIDEO_PATTERN = "person{01..25}_{walking|jogging|running}_d{1..4}_uncomp.avi"
SPLIT_NAMES = {"training": "train", "validation": "val", "test": "test"}

# Direction measurement, on the resized frames.
MOTION_THRESHOLD = 20  # grey levels a pixel must change by between two frames to count as moving
MIN_MOVING_PIXELS = 0.002  # fraction of the frame that must move for a frame pair to be tracked
MIN_TRACKED_PAIRS = 0.25  # fraction of the frame pairs that must be tracked
MIN_TRAVEL = 0.1  # fraction of the width the fitted line must cross over the subsequence

LEFT_TO_RIGHT = "left to right"
RIGHT_TO_LEFT = "right to left"
TOO_LITTLE_MOTION = "too little motion to tell the direction"
PAST_THE_END = "subsequence past the end of the video"

_ENTRY = re.compile(r"^person(\d+)_([a-z]+)_(d\d)\s+(.*)$")
_FRAMES = re.compile(r"^frames\s+(.+)$")
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")
_SPLIT = re.compile(r"^(training|validation|test)\s*:(.*)$", re.IGNORECASE)


@dataclass
class KthConfig:
    kth: Path | None = None  # folder with the person*_*_d*_uncomp.avi videos (flat or in per-action folders)
    sequences: Path | None = None  # the official sequences file; default KTH/00sequences.txt
    actions: tuple[str, ...] = ACTIONS
    frames: int = 16
    size: int = 64
    channels: int = 1  # KTH is grey; 3 repeats it as RGB
    stride: int = 4  # frames between the starts of consecutive clips of one subsequence


@dataclass(frozen=True)
class KthSequence:
    """One line of the sequences file: a video and its subsequences (1-based, inclusive)."""

    person: int
    action: str
    scenario: str  # "d1".."d4"
    ranges: tuple[tuple[int, int], ...]

    @property
    def name(self) -> str:
        return f"person{self.person:02d}_{self.action}_{self.scenario}"

    @property
    def video(self) -> str:
        return f"{self.name}_uncomp.avi"


def parse_sequences(text: str, source: str = SEQUENCES_FILE) -> list[KthSequence]:
    """Every data line of a KTH sequences file; header lines are ignored, ``*missing*`` entries left out."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = _ENTRY.match(line.strip())
        if entry is None:
            continue
        person, action, scenario, rest = entry.groups()
        if rest.strip() == "*missing*":
            continue
        frames = _FRAMES.match(rest.strip())
        if frames is None:
            raise DataError(f"{source} line {number}: expected 'frames A-B, C-D, ...', got {line.strip()!r}")
        ranges = tuple(_parse_range(part, source, number) for part in frames.group(1).split(","))
        entries.append(KthSequence(int(person), action, scenario, ranges))
    return entries


def _parse_range(text: str, source: str, number: int) -> tuple[int, int]:
    match = _RANGE.match(text.strip())
    if match is None:
        raise DataError(f"{source} line {number}: {text.strip()!r} is not a frame range like 1-75")
    first, last = int(match.group(1)), int(match.group(2))
    if not 1 <= first <= last:
        raise DataError(f"{source} line {number}: frame range {first}-{last} is empty or not 1-based")
    return first, last


def parse_person_split(text: str, source: str = SEQUENCES_FILE) -> dict[int, str]:
    """Person → "train" / "val" / "test", from the header lines "Training: person11, 12, ..." etc."""
    split_of: dict[int, str] = {}
    for line in text.splitlines():
        match = _SPLIT.match(line.strip())
        if match is None:
            continue
        split = SPLIT_NAMES[match.group(1).lower()]
        for person in map(int, re.findall(r"\d+", match.group(2))):
            if split_of.get(person, split) != split:
                raise DataError(f"{source}: person {person} is in both {split_of[person]} and {split}")
            split_of[person] = split
    if not split_of:
        raise DataError(f"{source}: the header gives no person split "
                        "(lines like 'Training: person11, 12', 'Validation: ...', 'Test: ...')")  # fmt: skip
    return split_of


def caption(person: int, action: str, direction: str) -> str:
    return f"person {person} is {action} {direction}"


def horizontal_track(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Times and horizontal centroids (in pixels) of the moving pixels, for each pair of consecutive
    frames ``[T, H, W, C]`` where enough pixels move to tell where the motion is."""
    grey = frames.astype(np.float32).mean(axis=-1)
    moving = np.abs(np.diff(grey, axis=0)) > MOTION_THRESHOLD  # [T-1, H, W]
    per_column = moving.sum(axis=1)  # [T-1, W]
    counts = per_column.sum(axis=1)
    tracked = counts >= MIN_MOVING_PIXELS * grey.shape[1] * grey.shape[2]
    columns = np.arange(grey.shape[2], dtype=np.float64)
    centroids = (per_column[tracked] * columns).sum(axis=1) / counts[tracked]
    return np.flatnonzero(tracked) + 0.5, centroids


def theil_sen_slope(t: np.ndarray, x: np.ndarray) -> float:
    """The median of the slopes between all pairs of points: a line fit that ignores outliers."""
    i, j = np.triu_indices(len(t), k=1)
    return float(np.median((x[j] - x[i]) / (t[j] - t[i])))


def measure_direction(frames: np.ndarray) -> str | None:
    """The direction of a subsequence ``[T, H, W, C]``, "left to right" or "right to left"; None when
    the motion is too weak, too rare or too short a way across the frame to tell."""
    times, centroids = horizontal_track(frames)
    pairs = len(frames) - 1
    if len(times) < max(2, MIN_TRACKED_PAIRS * pairs):
        return None
    travel = theil_sen_slope(times, centroids) * pairs
    if abs(travel) < MIN_TRAVEL * frames.shape[2]:
        return None
    return LEFT_TO_RIGHT if travel > 0 else RIGHT_TO_LEFT


class Kth(DatasetBuilder):
    Config = KthConfig
    version = "1"

    def __init__(self, config: KthConfig) -> None:
        super().__init__(config)
        check_clip_options("kth", config.frames, config.size, config.channels, config.stride)
        unknown = sorted(set(config.actions) - set(ACTIONS))
        if unknown or not config.actions:
            raise DataError(f"kth: actions must be among {', '.join(ACTIONS)} (those that cross the frame), "
                            f"got {', '.join(config.actions) or 'none'}")  # fmt: skip

    def _folder(self) -> Path:
        if self.config.kth is None:
            raise DataError(f"kth needs the KTH videos: pass --kth DIR, a folder with {VIDEO_PATTERN} "
                            f"and the official {SEQUENCES_FILE}")  # fmt: skip
        return Path(self.config.kth)

    def _sequences_file(self) -> Path:
        return Path(self.config.sequences) if self.config.sequences else self._folder() / SEQUENCES_FILE

    def sources(self) -> dict[str, Path]:
        folder, sequences = self._folder(), self._sequences_file()
        if not folder.is_dir():
            raise DataError(f"KTH folder not found: {folder}; pass --kth DIR, a folder with {VIDEO_PATTERN}")
        if not sequences.is_file():
            raise DataError(f"KTH sequences file not found: {sequences}; put the official {SEQUENCES_FILE} "
                            "in the --kth folder or pass -o sequences=FILE")  # fmt: skip
        return {"sequences": sequences, "videos": folder}

    def _find_video(self, entry: KthSequence) -> Path | None:
        """The entry's video, flat in the folder or in a per-action folder (as the official zips unpack)."""
        folder = self._folder()
        for path in (folder / entry.video, folder / entry.action / entry.video):
            if path.is_file():
                return path
        return None

    def build(self, sink: ClipSink) -> None:
        sequences = self._sequences_file()
        text = sequences.read_text(encoding="utf-8", errors="replace")
        split_of = parse_person_split(text, str(sequences))
        entries = [e for e in parse_sequences(text, str(sequences)) if e.action in self.config.actions]
        for entry in entries:
            if entry.person not in split_of:
                raise DataError(f"{sequences}: person {entry.person} ({entry.name}) is in no header split")
        videos = [(entry, self._find_video(entry)) for entry in entries]
        if not any(video for _, video in videos):
            raise DataError(f"no KTH video found in {self._folder()}: expected files named {VIDEO_PATTERN} "
                            "(flat, or in walking/, jogging/, running/ folders)")  # fmt: skip

        sink.start("kth", len(entries))
        for entry, video in videos:
            if video is None:
                sink.skip(VIDEO_MISSING)
            else:
                self._add_video(sink, entry, video, split_of[entry.person])
            sink.advance()

    def _add_video(self, sink: ClipSink, entry: KthSequence, video: Path, split: str) -> None:
        """Cut the clips of every subsequence of ``video``. KTH videos are short (a few hundred
        frames of 160×120), so each is decoded whole, at clip size, once."""
        cfg = self.config
        try:
            frames = read_video(video, (cfg.size, cfg.size), cfg.channels)
        except T2VError:
            sink.skip(VIDEO_UNREADABLE)
            return
        for first, last in entry.ranges:
            if first > len(frames):
                sink.skip(PAST_THE_END)
                continue
            subsequence = frames[first - 1 : last]  # a range running past the video's end is cut short
            if len(subsequence) < cfg.frames:
                sink.skip(f"subsequence shorter than {cfg.frames} frames")
                continue
            direction = measure_direction(subsequence)
            if direction is None:
                sink.skip(TOO_LITTLE_MOTION)
                continue
            text = caption(entry.person, entry.action, direction)
            attributes = {"person": entry.person, "action": entry.action, "direction": direction,
                          "scenario": entry.scenario, "subsequence": [first, last]}  # fmt: skip
            for offset, clip in sliding_windows([subsequence], cfg.frames, cfg.stride):
                sink.add(clip, text, bucket=text, split=split, source=video.name,
                         attributes={**attributes, "start": first + offset})  # fmt: skip
