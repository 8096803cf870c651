from __future__ import annotations

import json
import shutil
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from t2vkit.data import PreparedDataset
from t2vkit.data.prepare import prepare
from t2vkit.errors import DataError
from t2vkit.plugins.datasets.clips import normalise_caption
from t2vkit.plugins.datasets.tacos import gather_frames, read_annotations, sample_indices

# ---------------------------------------------------------------- the real annotation files


def test_real_annotations_parse_with_the_published_sizes(tacos_annotations: Path):
    moments = read_annotations(tacos_annotations)
    sizes = {}
    for split in ("train", "val", "test"):
        mine = [m for m in moments if m.split == split]
        sizes[split] = (len({m.video for m in mine}), len(mine))
    assert sizes == {"train": (75, 9790), "val": (27, 4436), "test": (25, 4001)}


def test_real_intervals_are_cut_at_the_last_frame(tacos_annotations: Path):
    moments = read_annotations(tacos_annotations)
    expected, cut = [], 0
    for split in ("train", "val", "test"):
        for video, entry in json.loads((tacos_annotations / f"{split}.json").read_text()).items():
            for (start, end), sentence in zip(entry["timestamps"], entry["sentences"], strict=True):
                last = entry["num_frames"] - 1
                cut += end > last
                expected.append((split, video, start, min(end, last), sentence.strip()))
    assert [(m.split, m.video, m.start, m.end, m.sentence) for m in moments] == expected
    assert cut == 48


# ---------------------------------------------------------------- streaming


def test_gather_stops_reading_once_every_request_is_served():
    consumed = []

    def chunks():
        for first in range(0, 1000, 10):
            consumed.append(first)
            yield np.arange(first, first + 10, dtype=np.int32).reshape(10, 1, 1, 1)

    requests = [sample_indices(5, 20, 4), sample_indices(0, 3, 6), sample_indices(30, 2000, 3)]
    served = dict(gather_frames(chunks(), requests))
    assert served[0][:, 0, 0, 0].tolist() == [5, 10, 15, 20]
    assert served[1][:, 0, 0, 0].tolist() == [0, 1, 1, 2, 2, 3]  # a short interval repeats frames
    assert served[2] is None  # frame 2000 never came
    assert len(consumed) == 100
    served = dict(gather_frames(chunks(), requests[:2]))
    assert len(served) == 2
    assert consumed[100:] == [0, 10, 20]  # stopped after frame 20


# ---------------------------------------------------------------- end to end on written videos


def _write_indexed_avi(path: Path, count: int, width: int = 32, height: int = 24) -> None:
    """Frame i is flat, red = i % 256 and green = 20 × (i // 256): lossless, so indices read back exactly."""
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=29.4, codec="rawvideo", pix_fmt_out="bgr24", macro_block_size=1,
        ffmpeg_log_level="error",
    )  # fmt: skip
    writer.send(None)
    frame = np.full((height, width, 3), 100, np.uint8)
    for i in range(count):
        frame[..., 0], frame[..., 1] = i % 256, 20 * (i // 256)
        writer.send(frame.copy())
    writer.close()


def _frame_indices(clip: np.ndarray) -> list[int]:
    return [int(f[0, 0, 0]) + 256 * (int(f[0, 0, 1]) // 20) for f in clip]


def _entry(pairs: list[tuple[int, int, str]], num_frames: int) -> dict:
    return {"timestamps": [[s, e] for s, e, _ in pairs], "sentences": [t for *_, t in pairs],
            "fps": 29.4, "num_frames": num_frames}  # fmt: skip


ANNOTATIONS = {
    "train": {
        "s01-d01.avi": _entry([(0, 29, "He takes out a PAN."), (10, 12, "he takes out a pan"),
                               (100, 130, "She cuts the onion"), (280, 320, "He washes his hands")], 300),
        "s02-d02.avi": _entry([(0, 50, "He rinses the carrot."), (60, 90, "He peels it.")], 500),  # no video
    },
    "val": {"s03-d03.avi": _entry([(20, 60, "The person gets out a knife."), (150, 190, "He slices.")], 200)},
    "test": {
        "s01-d01.avi": _entry([(200, 260, "  She stirs.  ")], 300),  # the same video in another split
        "s04-d04.avi": _entry([(0, 20, "She waits."), (5, 9, "She waits more.")], 100),  # not a video
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def tacos_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tacos")
    annotations, videos = root / "annotations", root / "videos"
    annotations.mkdir()
    videos.mkdir()
    for split, data in ANNOTATIONS.items():
        (annotations / f"{split}.json").write_text(json.dumps(data))
    _write_indexed_avi(videos / "s01-d01.avi", 300)
    _write_indexed_avi(videos / "s03-d03.avi", 100)  # the annotations say 200 frames
    (videos / "s04-d04.avi").write_bytes(b"not a video at all" * 100)
    return annotations, videos


def test_prepare_samples_each_interval_uniformly(tacos_dirs: tuple[Path, Path], tmp_path: Path):
    annotations, videos = tacos_dirs
    result = prepare("tacos", tmp_path / "t", {"annotations": annotations, "videos": videos})
    data = PreparedDataset(tmp_path / "t")
    assert data.clip_shape == (16, 64, 64, 3)
    assert result.meta["splits"] == {"train": 4, "val": 1, "test": 1}
    assert result.meta["skipped"] == {
        "video file missing": 2,
        "interval past the end of the decoded video": 1,
        "video file unreadable": 2,
    }
    intervals = {  # caption → the interval its clip samples (the last one cut at frame 299)
        "He takes out a PAN.": (0, 29), "he takes out a pan": (10, 12), "She cuts the onion": (100, 130),
        "He washes his hands": (280, 299), "She stirs.": (200, 260), "The person gets out a knife.": (20, 60),
    }  # fmt: skip
    assert sorted(data.captions()) == sorted(intervals)
    for index, record in enumerate(data.records):
        start, end = intervals[record.caption]
        assert record.attributes == {"video": record.source, "start": start, "end": end}
        assert _frame_indices(data.clips[index]) == sample_indices(start, end, 16).tolist()
        assert data.buckets[record.bucket] == normalise_caption(record.caption)
    assert data.buckets == ["he takes out a pan", "he washes his hands", "she cuts the onion", "she stirs",
                            "the person gets out a knife"]  # fmt: skip
    assert {(r.caption, r.split, r.source) for r in data.records if r.split != "train"} == {
        ("She stirs.", "test", "s01-d01.avi"),
        ("The person gets out a knife.", "val", "s03-d03.avi"),
    }


def test_real_test_split_with_one_video_present(tacos_annotations: Path, tmp_path: Path):
    annotations, videos = tmp_path / "annotations", tmp_path / "videos"
    annotations.mkdir()
    videos.mkdir()
    shutil.copy(tacos_annotations / "test.json", annotations / "test.json")
    for split in ("train", "val"):
        (annotations / f"{split}.json").write_text("{}")
    _write_indexed_avi(videos / "s27-d50.avi", 2414, width=16, height=12)
    result = prepare("tacos", tmp_path / "t", {"annotations": annotations, "videos": videos, "size": 8})
    assert result.meta["splits"] == {"train": 0, "val": 0, "test": 119}
    assert result.meta["skipped"] == {"video file missing": 4001 - 119}


def test_missing_inputs_are_clear_errors(tacos_dirs: tuple[Path, Path], tmp_path: Path):
    annotations, _ = tacos_dirs
    no_videos = tmp_path / "none"
    no_videos.mkdir()
    with pytest.raises(DataError, match=r"no TACoS video found in .*none: expected the annotated .*s01-d01"):
        prepare("tacos", tmp_path / "out", {"annotations": annotations, "videos": no_videos})
    with pytest.raises(DataError, match=r"train.json; pass --annotations DIR"):
        prepare("tacos", tmp_path / "out", {"annotations": tmp_path, "videos": no_videos})
    with pytest.raises(DataError, match="tacos needs the videos: pass --videos DIR"):
        prepare("tacos", tmp_path / "out", {"annotations": annotations})
    assert not (tmp_path / "out").exists()


def test_malformed_annotations_name_the_file(tmp_path: Path):
    (tmp_path / "videos").mkdir()
    for split, text in (("train", "{}"), ("val", "{}"), ("test", '{"s1.avi": {"timestamps": [[0, 5]]}}')):
        (tmp_path / f"{split}.json").write_text(text)
    with pytest.raises(DataError, match=r"test.json: s1.avi needs timestamps, sentences and num_frames"):
        prepare("tacos", tmp_path / "out", {"annotations": tmp_path, "videos": tmp_path / "videos"})
