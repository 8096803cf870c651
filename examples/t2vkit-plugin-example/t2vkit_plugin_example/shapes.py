"""shapes: a coloured square bouncing left and right or up and down on a dark canvas.

A synthetic data set for trying t2vkit end to end in seconds, with nothing to download. Each clip
shows one square of a named colour moving along one axis at a constant speed and reflecting off
the borders; the other coordinate stays fixed. The caption names the colour and the axis ("a red
square is moving left and right"), so the buckets are colour × motion (12 by default) and each
holds many different videos: the one-to-many case, like SyncDraw-MM.

Clips are drawn one at a time from a random stream per split, so the first clips of a split do
not depend on how many are asked for, and changing ``num_train`` leaves val and test unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from t2vkit.errors import ConfigError
from t2vkit.interfaces import ClipSink, DatasetBuilder

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (60, 100, 245),
    "yellow": (240, 220, 40),
    "magenta": (220, 50, 220),
    "cyan": (40, 220, 230),
}
MOTIONS = ("left and right", "up and down")
BACKGROUND = (16, 16, 24)
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}


@dataclass
class ShapesConfig:
    num_train: int = 2000
    num_val: int = 200
    num_test: int = 200
    frames: int = 16
    size: int = 64  # canvas height and width in pixels
    square: int = 12  # side of the square in pixels
    min_speed: int = 2  # pixels per frame
    max_speed: int = 6
    colours: list[str] = field(default_factory=lambda: list(COLOURS))
    seed: int = 0


def caption(colour: str, motion: str) -> str:
    return f"a {colour} square is moving {motion}"


def bounce(start: int, velocity: int, frames: int, span: int) -> np.ndarray:
    """Positions ``[frames]`` of a point moving at ``velocity`` inside [0, span], reflecting at both ends."""
    phase = np.mod(start + velocity * np.arange(frames), 2 * span)
    return np.where(phase <= span, phase, 2 * span - phase)


class Shapes(DatasetBuilder):
    Config = ShapesConfig
    version = "1"  # bump when the same options would give different clips

    def __init__(self, config: ShapesConfig) -> None:
        super().__init__(config)
        unknown = [c for c in config.colours if c not in COLOURS]
        if unknown or not config.colours or len(set(config.colours)) != len(config.colours):
            raise ConfigError(
                f"shapes: colours must be distinct names from {', '.join(COLOURS)}; got {config.colours}"
            )
        if not 1 <= config.square < config.size:
            raise ConfigError(
                f"shapes: need 1 <= square < size, got square={config.square}, size={config.size}"
            )
        span = config.size - config.square
        if not 1 <= config.min_speed <= config.max_speed <= span:
            raise ConfigError(f"shapes: need 1 <= min_speed <= max_speed <= size - square ({span})")
        if min(config.num_train, config.num_val, config.num_test) < 0 or config.frames < 1:
            raise ConfigError("shapes: clip counts must be >= 0 and frames >= 1")

    def sources(self) -> dict[str, Path]:
        return {}  # generated from the seed: no raw files to check

    def build(self, sink: ClipSink) -> None:
        cfg = self.config
        for split, count in (("train", cfg.num_train), ("val", cfg.num_val), ("test", cfg.num_test)):
            if count == 0:
                continue
            sink.start(f"shapes {split}", count)
            for clip, text, attributes in self.clips(split, count):
                sink.add(clip, text, bucket=text, split=split, attributes=attributes)
                sink.advance()

    def clips(self, split: str, count: int) -> Iterator[tuple[np.ndarray, str, dict[str, Any]]]:
        """The first ``count`` clips of ``split``: (uint8 ``[T, H, W, 3]``, caption, attributes)."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, SPLIT_STREAMS[split]])
        span = cfg.size - cfg.square
        for _ in range(count):
            colour = cfg.colours[rng.integers(len(cfg.colours))]
            motion = MOTIONS[rng.integers(len(MOTIONS))]
            velocity = int(rng.integers(cfg.min_speed, cfg.max_speed + 1) * rng.choice([-1, 1]))
            start = int(rng.integers(0, span + 1))
            fixed = int(rng.integers(0, span + 1))
            moving = bounce(start, velocity, cfg.frames, span)
            still = np.full(cfg.frames, fixed)
            ys, xs = (still, moving) if motion == "left and right" else (moving, still)

            clip = np.empty((cfg.frames, cfg.size, cfg.size, 3), np.uint8)
            clip[:] = BACKGROUND
            for t in range(cfg.frames):
                clip[t, ys[t] : ys[t] + cfg.square, xs[t] : xs[t] + cfg.square] = COLOURS[colour]
            attributes = {
                "colour": colour,
                "motion": motion,
                "velocity": velocity,
                "start": [int(ys[0]), int(xs[0])],
            }
            yield clip, caption(colour, motion), attributes
