from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from t2vkit.data import PreparedDataset
from t2vkit.data.prepare import prepare
from t2vkit.data.torch_dataset import ClipDataset
from t2vkit.errors import DataError
from t2vkit.plugins.datasets.folder import draw_splits
from t2vkit.video_io import write_mp4

LENGTHS = {"a.mp4": 40, "b.mp4": 20, "c.mp4": 16, "short.mp4": 10}  # frames


def _ramp(frames: int) -> np.ndarray:
    """Flat grey frames getting brighter by 5 a frame, so a clip's first frame tells where it starts."""
    values = np.arange(frames, dtype=np.uint8) * 5
    return np.broadcast_to(values[:, None, None, None], (frames, 24, 32, 3)).copy()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("folder")
    for name, frames in LENGTHS.items():
        write_mp4(folder / name, _ramp(frames))
    return folder


def _captions(folder: Path, text: str) -> Path:
    (folder / "captions.csv").write_text(text)
    return folder / "captions.csv"


PLAIN = """path,caption
a.mp4,A red ball bounces.
b.mp4,a red ball bounces
short.mp4,Too short
missing.mp4,Nowhere to be found
c.mp4,First caption
c.mp4,Second caption
"""


def test_prepare_windows_captions_and_skips(videos: Path, tmp_path: Path):
    captions = _captions(tmp_path, PLAIN)  # given with -o captions=FILE, beside the shared videos
    options = {"videos": videos, "captions": captions, "val_fraction": 0.2, "test_fraction": 0.2, "seed": 1}
    result = prepare("folder", tmp_path / "f", options)
    data = PreparedDataset(tmp_path / "f")
    assert data.clip_shape == (16, 64, 64, 3)
    assert result.meta["skipped"] == {"video shorter than 16 frames": 1, "video file missing": 1}
    clips = [(r.source, r.attributes["start"], r.caption) for r in data.records]
    assert clips == [("a.mp4", 0, "A red ball bounces."), ("a.mp4", 16, "A red ball bounces."),
                     ("b.mp4", 0, "a red ball bounces"), ("c.mp4", 0, "First caption"),
                     ("c.mp4", 0, "Second caption")]  # fmt: skip
    assert data.buckets == ["a red ball bounces", "first caption", "second caption"]
    assert np.abs(data.clips[1][:, 0, 0, 0].astype(int) - 5 * np.arange(16, 32)).max() <= 3  # frames 16..31
    # Whole videos go to one split each, drawn with the seed over the five listed videos.
    expected = draw_splits(["a.mp4", "b.mp4", "short.mp4", "missing.mp4", "c.mp4"], 0.2, 0.2, seed=1)
    assert sorted(expected.values()) == ["test", "train", "train", "train", "val"]
    assert all(r.split == expected[r.source] for r in data.records)

    dataset = ClipDataset(tmp_path / "f")
    item = dataset[0]
    assert item["video"].shape == (3, 16, 64, 64) and item["video"].dtype == torch.float32
    assert -1.0 <= float(item["video"].min()) <= float(item["video"].max()) <= 1.0
    assert item["caption"] == "A red ball bounces."


def test_drawn_splits_ignore_row_order_and_follow_the_fractions():
    names = [f"v{i}.mp4" for i in range(50)]
    splits = draw_splits(names, 0.1, 0.2, seed=3)
    shuffled = names[:]
    random.Random(0).shuffle(shuffled)
    assert draw_splits(shuffled, 0.1, 0.2, seed=3) == splits
    assert list(splits.values()).count("val") == 5 and list(splits.values()).count("test") == 10
    assert draw_splits(names, 0.1, 0.2, seed=4) != splits


def test_bucket_and_split_columns_stride_and_limit(videos: Path, tmp_path: Path):
    captions = _captions(tmp_path, "Path, Caption ,bucket,split\n"
                                   "a.mp4,A red ball,balls,train\n"
                                   "b.mp4,Blue ball!,balls,VAL\n"
                                   "c.mp4,Green ball,,test\n")  # fmt: skip
    result = prepare("folder", tmp_path / "f", {"videos": videos, "captions": captions, "stride": 8})
    data = PreparedDataset(tmp_path / "f")
    assert result.meta["splits"] == {"train": 4, "val": 1, "test": 1}  # a: 0, 8, 16, 24
    assert data.buckets == ["balls", "green ball"]
    assert {(r.source, r.split, data.buckets[r.bucket]) for r in data.records} == {
        ("a.mp4", "train", "balls"),
        ("b.mp4", "val", "balls"),
        ("c.mp4", "test", "green ball"),
    }
    options = {"videos": videos, "captions": captions, "stride": 8, "max_clips_per_video": 2}
    limited = prepare("folder", tmp_path / "g", options)
    assert limited.meta["splits"] == {"train": 2, "val": 1, "test": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,text\na.mp4,hello\n", r"captions.csv line 1: no caption column"),
        ("path,caption\na.mp4,hello\nb.mp4,  \n", r"captions.csv line 3: empty caption for b.mp4"),
        ("path,caption,split\na.mp4,hello,training\n", r"captions.csv line 2: unknown split 'training'"),
        ("path,caption,split\na.mp4,hi,train\na.mp4,ho,test\n", r"captions.csv lines 2, 3: a.mp4 is given"),
        ("path,caption\n", r"captions.csv lists no videos"),
        ("", r"captions.csv line 1: the file is empty"),
    ],
)
def test_malformed_captions_name_file_and_line(tmp_path: Path, text: str, message: str):
    _captions(tmp_path, text)
    with pytest.raises(DataError, match=message):
        prepare("folder", tmp_path / "out", {"videos": tmp_path})
    assert not (tmp_path / "out").exists()


def test_missing_folder_or_captions_file(tmp_path: Path):
    with pytest.raises(DataError, match=r"captions file not found: .*captions.csv; write it with a header"):
        prepare("folder", tmp_path / "out", {"videos": tmp_path})
    with pytest.raises(DataError, match=r"video folder not found: .*nowhere; pass --videos DIR"):
        prepare("folder", tmp_path / "out", {"videos": tmp_path / "nowhere"})
