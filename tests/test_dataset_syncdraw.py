from __future__ import annotations

import gzip
import re
import struct

import numpy as np
import pytest

from t2vkit.data import PreparedDataset
from t2vkit.data.prepare import prepare
from t2vkit.errors import ConfigError, DataError

SMALL = {"num_train": 60, "num_val": 20, "num_test": 20}


@pytest.fixture(scope="module")
def small(mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sd") / "syncdraw"
    result = prepare("syncdraw-mm", out, {"mnist": mnist_dir, **SMALL})
    return result, PreparedDataset(out)


def test_counts_shapes_and_captions(small):
    result, data = small
    assert result.meta["splits"] == {"train": 60, "val": 20, "test": 20}
    assert data.clip_shape == (16, 64, 64, 1)
    assert data.clips.shape == (100, 16, 64, 64, 1) and data.clips.dtype == np.uint8
    pattern = re.compile(r"^digit [0-9] is moving (up and down|left and right)$")
    assert all(pattern.match(c) for c in data.captions())
    for record in data.records:  # the caption says what the attributes say, and names the bucket
        assert record.caption == f"digit {record.attributes['digit']} is moving {record.attributes['motion']}"
        assert data.buckets[record.bucket] == record.caption


def test_full_size_has_twenty_buckets(mnist_dir, tmp_path):
    result = prepare("syncdraw-mm", tmp_path / "b", {"mnist": mnist_dir, "num_train": 400, "num_val": 0, "num_test": 0})
    assert result.meta["buckets"] == 20


def _centre_of_mass(frame: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(frame[..., 0] > 0)
    weights = frame[ys, xs, 0].astype(float)
    return float(np.average(ys, weights=weights)), float(np.average(xs, weights=weights))


def test_digit_moves_only_along_its_axis_and_stays_inside(small):
    _, data = small
    for i, record in enumerate(data.records[:40]):
        clip = data.clips[i]
        assert clip[:, 0, :, :].any() or clip[:, -1, :, :].any() or clip.any()  # a digit is drawn
        centres = np.array([_centre_of_mass(f) for f in clip])
        spread = centres.max(axis=0) - centres.min(axis=0)
        moving, still = (0, 1) if record.attributes["motion"] == "up and down" else (1, 0)
        assert spread[still] == pytest.approx(0.0, abs=1e-6)
        assert spread[moving] >= 2 * 3  # at least two pixels a frame over 16 frames, bouncing
        ink = [int(f.sum()) for f in clip]
        assert max(ink) == min(ink)  # the whole digit stays on the canvas in every frame


def test_digits_come_from_disjoint_mnist_pools(small):
    _, data = small
    by_split: dict[str, set[int]] = {"train": set(), "val": set(), "test": set()}
    for r in data.records:
        by_split[r.split].add(r.attributes["mnist_index"])
    assert not by_split["train"] & by_split["val"]  # both from MNIST's training set, disjoint pools


def test_same_seed_same_bytes_other_seed_differs(mnist_dir, tmp_path):
    a = prepare("syncdraw-mm", tmp_path / "a", {"mnist": mnist_dir, **SMALL, "seed": 3})
    b = prepare("syncdraw-mm", tmp_path / "b", {"mnist": mnist_dir, **SMALL, "seed": 3})
    c = prepare("syncdraw-mm", tmp_path / "c", {"mnist": mnist_dir, **SMALL, "seed": 4})
    assert a.meta["fingerprint"] == b.meta["fingerprint"] != c.meta["fingerprint"]
    clips = {k: (tmp_path / k / "clips.u8").read_bytes() for k in "abc"}
    assert clips["a"] == clips["b"] != clips["c"]


def test_existing_output_is_reused_refused_or_replaced(mnist_dir, tmp_path):
    out = tmp_path / "d"
    first = prepare("syncdraw-mm", out, {"mnist": mnist_dir, **SMALL})
    again = prepare("syncdraw-mm", out, {"mnist": mnist_dir, **SMALL})
    assert again.reused and again.meta["fingerprint"] == first.meta["fingerprint"]
    with pytest.raises(DataError, match="already holds a different prepared data set; pass --overwrite"):
        prepare("syncdraw-mm", out, {"mnist": mnist_dir, **SMALL, "seed": 9})
    replaced = prepare("syncdraw-mm", out, {"mnist": mnist_dir, **SMALL, "seed": 9}, overwrite=True)
    assert not replaced.reused and PreparedDataset(out).meta["options"]["seed"] == 9
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="already holds other files"):
        prepare("syncdraw-mm", other, {"mnist": mnist_dir, **SMALL})
    assert (other / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "other"]  # no staging folders left


def _write_idx(path, magic: int, dims: tuple[int, ...], payload: bytes) -> None:
    header = struct.pack(">i", magic) + struct.pack(f">{len(dims)}i", *dims)
    with gzip.open(path, "wb") as fh:
        fh.write(header + payload)


def _fake_mnist(folder, images_magic: int = 2051, truncate: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", 12), ("t10k", 6)):
        pixels = np.random.default_rng(0).integers(0, 255, size=(n, 28, 28), dtype=np.uint8).tobytes()
        _write_idx(folder / f"{part}-images-idx3-ubyte.gz", images_magic, (n, 28, 28), pixels[: len(pixels) - truncate])
        _write_idx(folder / f"{part}-labels-idx1-ubyte.gz", 2049, (n,), bytes(range(n % 10)) + bytes(n - n % 10))


def test_bad_mnist_files_are_clear_errors_and_leave_nothing(tmp_path):
    out = tmp_path / "out"
    options = {"num_train": 4, "num_val": 2, "num_test": 2}
    with pytest.raises(DataError, match=r"MNIST folder not found: .*nowhere; pass --mnist DIR"):
        prepare("syncdraw-mm", out, {"mnist": tmp_path / "nowhere", **options})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz not found in"):
        prepare("syncdraw-mm", out, {"mnist": tmp_path / "empty", **options})
    _fake_mnist(tmp_path / "magic", images_magic=2049)
    with pytest.raises(DataError, match=r"magic 2049, expected 2051"):
        prepare("syncdraw-mm", out, {"mnist": tmp_path / "magic", **options})
    _fake_mnist(tmp_path / "short", truncate=100)
    with pytest.raises(DataError, match="is truncated"):
        prepare("syncdraw-mm", out, {"mnist": tmp_path / "short", **options})
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folders left


def test_a_build_failing_midway_leaves_no_output(tmp_path, mnist_dir, monkeypatch):
    from t2vkit.plugins.datasets.syncdraw import SyncDrawMM

    original = SyncDrawMM._write_split

    def write_then_fail(self, sink, split, *args):
        original(self, sink, split, *args)
        if split == "val":
            raise RuntimeError("disk full")

    monkeypatch.setattr(SyncDrawMM, "_write_split", write_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare("syncdraw-mm", tmp_path / "out", {"mnist": mnist_dir, **SMALL})
    assert list(tmp_path.iterdir()) == []


def test_unknown_option_names_the_flags_the_dataset_takes(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset syncdraw-mm has no option kth \(its options: download, "):
        prepare("syncdraw-mm", tmp_path / "x", {"kth": tmp_path})
