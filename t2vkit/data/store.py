"""The on-disk form of a prepared data set, which ``train``, ``evaluate`` and ``latents`` read.

::

    DIR/meta.json      format version, data set and generator version, options, source checksums,
                       clip shape, counts per split, skipped items, fingerprint
    DIR/clips.u8       every clip, raw uint8 [N, T, H, W, C], memory-mappable
    DIR/clips.jsonl    one line per clip: caption, bucket id, split, attributes, source
    DIR/buckets.json   bucket names; a clip's bucket id indexes this list
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from t2vkit.errors import DataError
from t2vkit.fsutil import atomic_write_json, read_json
from t2vkit.interfaces import ClipSink

DATASET_FORMAT = "t2vkit-dataset"
DATASET_FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")


def _natural_key(text: str) -> list[Any]:
    """Sort "digit 2" before "digit 10"."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", text)]


class ClipWriter(ClipSink):
    """Appends clips to ``clips.u8`` and collects their records; :meth:`finish` writes the rest."""

    def __init__(self, root: Path, progress: Callable[[str, int | None, int], None] | None = None) -> None:
        self.root = root
        self._data = (root / "clips.u8").open("wb")
        self._records: list[dict[str, Any]] = []
        self._shape: tuple[int, ...] | None = None
        self._skipped: Counter[str] = Counter()
        self._progress = progress or (lambda description, total, advance: None)

    def start(self, description: str, total: int | None) -> None:
        self._progress(description, total, 0)

    def advance(self, steps: int = 1) -> None:
        self._progress("", None, steps)

    def add(
        self,
        clip: np.ndarray,
        caption: str,
        bucket: str,
        split: str,
        attributes: dict[str, Any] | None = None,
        source: str = "",
    ) -> None:
        clip = np.asarray(clip)
        if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[-1] not in (1, 3):
            raise DataError(f"a clip must be uint8 [T, H, W, 1|3], got {clip.dtype} {tuple(clip.shape)}")
        if self._shape is None:
            self._shape = tuple(clip.shape)
        elif tuple(clip.shape) != self._shape:
            raise DataError(f"clip of shape {tuple(clip.shape)} from {source or '?'}; the others are {self._shape}")
        if split not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if not caption.strip():
            raise DataError(f"empty caption for a clip from {source or '?'}")
        self._data.write(np.ascontiguousarray(clip).tobytes())
        record = {"caption": caption, "bucket": bucket, "split": split, "attributes": attributes or {}}
        if source:
            record["source"] = source
        self._records.append(record)

    def skip(self, reason: str) -> None:
        self._skipped[reason] += 1

    @property
    def count(self) -> int:
        return len(self._records)

    @property
    def skipped(self) -> dict[str, int]:
        return dict(self._skipped)

    def finish(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Close the clip file and write the records, bucket table and ``meta.json``."""
        self._data.close()
        if not self._records:
            reasons = "; ".join(f"{n} × {r}" for r, n in self._skipped.items()) or "the builder produced nothing"
            raise DataError(f"no clips were produced ({reasons})")
        buckets = sorted({r["bucket"] for r in self._records}, key=_natural_key)
        bucket_id = {name: i for i, name in enumerate(buckets)}
        with (self.root / "clips.jsonl").open("w") as fh:
            for record in self._records:
                fh.write(json.dumps({**record, "bucket": bucket_id[record["bucket"]]}) + "\n")
        atomic_write_json(self.root / "buckets.json", buckets)
        splits = Counter(r["split"] for r in self._records)
        meta = {
            "format": DATASET_FORMAT,
            "format_version": DATASET_FORMAT_VERSION,
            **meta,
            "clip_shape": list(self._shape or ()),
            "count": len(self._records),
            "splits": {s: splits.get(s, 0) for s in SPLITS},
            "buckets": len(buckets),
            "skipped": self.skipped,
        }
        atomic_write_json(self.root / "meta.json", meta)
        return meta


@dataclass
class ClipRecord:
    caption: str
    bucket: int
    split: str
    attributes: dict[str, Any]
    source: str = ""


class PreparedDataset:
    """Read access to a prepared data set folder; clips are memory-mapped, never loaded whole."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.meta = read_meta(self.root)
        shape = self.meta["clip_shape"]
        expected = self.meta["count"] * int(np.prod(shape))
        data = self.root / "clips.u8"
        if not data.is_file() or data.stat().st_size != expected:
            raise DataError(f"{data} is missing or truncated (expected {expected} bytes); prepare the data set again")

    @property
    def name(self) -> str:
        return self.meta["dataset"]

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """(T, H, W, C)."""
        t, h, w, c = self.meta["clip_shape"]
        return t, h, w, c

    @cached_property
    def clips(self) -> np.memmap:
        return np.memmap(self.root / "clips.u8", np.uint8, mode="r", shape=(len(self), *self.clip_shape))

    @cached_property
    def records(self) -> list[ClipRecord]:
        with (self.root / "clips.jsonl").open() as fh:
            records = [ClipRecord(**json.loads(line)) for line in fh]
        if len(records) != len(self):
            raise DataError(f"{self.root}/clips.jsonl lists {len(records)} clips, meta.json says {len(self)}")
        return records

    @cached_property
    def buckets(self) -> list[str]:
        return json.loads((self.root / "buckets.json").read_text())

    def __len__(self) -> int:
        return int(self.meta["count"])

    def indices(self, split: str | None = None) -> np.ndarray:
        """Clip indices of one split (all clips for None)."""
        if split is not None and split not in SPLITS:
            raise DataError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
        return np.array([i for i, r in enumerate(self.records) if split is None or r.split == split], dtype=np.int64)

    def captions(self, indices: Sequence[int] | None = None) -> list[str]:
        idx = range(len(self)) if indices is None else indices
        return [self.records[i].caption for i in idx]

    def unique_captions(self) -> list[str]:
        return sorted({r.caption for r in self.records})


def read_meta(root: Path) -> dict[str, Any]:
    path = root / "meta.json"
    if not root.is_dir():
        raise DataError(f"data set folder not found: {root} (make one with `t2vkit data prepare`)")
    if not path.is_file():
        raise DataError(f"{root} is not a prepared t2vkit data set (no meta.json); make one with `t2vkit data prepare`")
    meta = read_json(path, DataError)
    if meta.get("format") != DATASET_FORMAT:
        raise DataError(f"{root} is not a prepared t2vkit data set ({path} has another format)")
    if meta.get("format_version", 0) > DATASET_FORMAT_VERSION:
        raise DataError(f"{root} was prepared by a newer t2vkit (format {meta['format_version']}); upgrade t2vkit")
    return meta
