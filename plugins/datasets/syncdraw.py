"""SyncDraw-MM: one MNIST digit bouncing up and down or left and right (Sync-DRAW's Moving MNIST).

Each clip shows one digit on a black canvas moving along one axis at a constant speed, bouncing
off the borders; the other coordinate stays fixed. The caption is Sync-DRAW's wording
("digit 5 is moving left and right"), so the 20 buckets (10 digits × 2 axes) each hold many
different videos: the one-to-many case of the paper. Training and validation digits come from
MNIST's training set (disjoint), test digits from its test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t2vkit.errors import DataError
from t2vkit.interfaces import ClipSink, DatasetBuilder

from . import mnist

MOTIONS = ("up and down", "left and right")
DIGIT = 28


@dataclass
class SyncDrawConfig:
    mnist: Path | None = None  # folder with the IDX files; default $T2VKIT_MNIST
    num_train: int = 10000
    num_val: int = 2000
    num_test: int = 2000
    frames: int = 16
    size: int = 64
    min_speed: int = 2  # pixels per frame
    max_speed: int = 5
    seed: int = 0
    download: bool = False  # fetch MNIST (checksums verified) when it is not on disk


def caption(digit: int, motion: str) -> str:
    return f"digit {digit} is moving {motion}"


def bounce(start: np.ndarray, velocity: np.ndarray, frames: int, span: int) -> np.ndarray:
    """Positions ``[N, frames]`` of points moving at ``velocity`` inside [0, span], reflecting at both ends."""
    travel = start[:, None] + velocity[:, None] * np.arange(frames)[None, :]
    phase = np.mod(travel, 2 * span)
    return np.where(phase <= span, phase, 2 * span - phase).astype(np.int64)


class SyncDrawMM(DatasetBuilder):
    Config = SyncDrawConfig
    version = "1"

    def __init__(self, config: SyncDrawConfig) -> None:
        super().__init__(config)
        if config.size < DIGIT + 2:
            raise DataError(f"syncdraw-mm: --size must be at least {DIGIT + 2}, got {config.size}")
        if not 1 <= config.min_speed <= config.max_speed:
            raise DataError("syncdraw-mm: need 1 <= min_speed <= max_speed")
        if min(config.num_train, config.num_val, config.num_test) < 0 or config.frames < 1:
            raise DataError("syncdraw-mm: clip counts must be >= 0 and frames >= 1")

    def _folder(self) -> Path:
        folder = self.config.mnist or mnist.default_folder()
        if folder is None:
            if self.config.download:
                return Path.home() / ".cache" / "t2vkit" / "mnist"
            raise DataError(f"syncdraw-mm needs MNIST: {mnist.HOW_TO}")
        return Path(folder)

    def sources(self) -> dict[str, Path]:
        folder = self._folder()
        if self.config.download:
            mnist.download(folder)
        if not folder.is_dir():
            raise DataError(f"MNIST folder not found: {folder}; {mnist.HOW_TO}")
        return {key: mnist.locate(folder, key) for key in mnist.FILES}

    def build(self, sink: ClipSink) -> None:
        cfg = self.config
        folder = self._folder()
        train_images, train_labels = mnist.load(folder, "train")
        test_images, test_labels = mnist.load(folder, "test")
        rng = np.random.default_rng(cfg.seed)

        # Disjoint pools of MNIST training digits for train and val.
        order = rng.permutation(len(train_images))
        n_val_pool = max(len(train_images) // 6, 1)
        pools = {
            "train": (train_images, train_labels, order[n_val_pool:]),
            "val": (train_images, train_labels, order[:n_val_pool]),
            "test": (test_images, test_labels, np.arange(len(test_images))),
        }
        for split, count in (("train", cfg.num_train), ("val", cfg.num_val), ("test", cfg.num_test)):
            images, labels, pool = pools[split]
            if count == 0:
                continue
            picks = rng.choice(pool, size=count, replace=count > len(pool))
            self._write_split(sink, split, images, labels, picks, rng)

    def _write_split(self, sink: ClipSink, split: str, images: np.ndarray, labels: np.ndarray,
                     picks: np.ndarray, rng: np.random.Generator) -> None:  # fmt: skip
        cfg = self.config
        n, span = len(picks), cfg.size - DIGIT
        axis = rng.integers(0, 2, size=n)  # 0: vertical (up and down), 1: horizontal
        speed = rng.integers(cfg.min_speed, cfg.max_speed + 1, size=n)
        velocity = speed * rng.choice([-1, 1], size=n)
        moving_start = rng.integers(0, span + 1, size=n)
        fixed = rng.integers(0, span + 1, size=n)
        path = bounce(moving_start, velocity, cfg.frames, span)  # [n, T]

        sink.start(f"syncdraw-mm {split}", n)
        clip = np.zeros((cfg.frames, cfg.size, cfg.size, 1), np.uint8)
        for i in range(n):
            digit_image = images[picks[i]]
            ys = path[i] if axis[i] == 0 else np.full(cfg.frames, fixed[i])
            xs = np.full(cfg.frames, fixed[i]) if axis[i] == 0 else path[i]
            clip[:] = 0
            for t in range(cfg.frames):
                clip[t, ys[t] : ys[t] + DIGIT, xs[t] : xs[t] + DIGIT, 0] = digit_image
            digit, motion = int(labels[picks[i]]), MOTIONS[axis[i]]
            text = caption(digit, motion)
            attributes = {"digit": digit, "motion": motion, "speed": int(speed[i]), "mnist_index": int(picks[i])}
            sink.add(clip, text, bucket=text, split=split, attributes=attributes)
            sink.advance()
