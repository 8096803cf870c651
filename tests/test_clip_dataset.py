from __future__ import annotations

import numpy as np
import pytest
import torch

from t2vkit.data import PreparedDataset
from t2vkit.data.prepare import prepare
from t2vkit.data.torch_dataset import ClipDataset, clip_to_tensor, tensor_to_clip
from t2vkit.errors import DataError


@pytest.fixture(scope="module")
def prepared(mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cd") / "sd"
    prepare("syncdraw-mm", out, {"mnist": mnist_dir, "num_train": 10, "num_val": 4, "num_test": 4})
    return out


def test_items_are_float_videos_in_the_documented_range(prepared):
    data = ClipDataset(prepared, split="train")
    assert len(data) == 10
    item = data[0]
    assert item["video"].shape == (1, 16, 64, 64) and item["video"].dtype == torch.float32
    assert item["video"].min() == -1.0 and item["video"].max() <= 1.0
    unit = ClipDataset(prepared, split="test", value_range="unit")[0]["video"]
    assert unit.min() == 0.0 and unit.max() <= 1.0
    assert isinstance(item["caption"], str) and isinstance(item["bucket"], int)


def test_without_video_an_item_is_its_caption_bucket_and_index(prepared):
    full, light = ClipDataset(prepared, split="val"), ClipDataset(prepared, split="val", with_video=False)
    assert light[2] == {k: v for k, v in full[2].items() if k != "video"} and "video" not in light[2]


def test_text_embeddings_are_looked_up_by_caption(prepared):
    captions = PreparedDataset(prepared).unique_captions()
    table = {c: torch.full((3,), float(i)) for i, c in enumerate(captions)}
    data = ClipDataset(prepared, split="val", text=table)
    item = data[1]
    assert torch.equal(item["text"], table[item["caption"]])


def test_uint8_tensor_round_trip_is_exact():
    clip = np.random.default_rng(0).integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    for value_range in ("signed", "unit"):
        assert np.array_equal(tensor_to_clip(clip_to_tensor(clip, value_range), value_range), clip)


def test_a_truncated_or_foreign_folder_is_refused(prepared, tmp_path):
    with pytest.raises(DataError, match="not a prepared t2vkit data set"):
        PreparedDataset(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("meta.json", "clips.jsonl", "buckets.json"):
        (broken / name).write_bytes((prepared / name).read_bytes())
    (broken / "clips.u8").write_bytes((prepared / "clips.u8").read_bytes()[:1000])
    with pytest.raises(DataError, match="missing or truncated"):
        PreparedDataset(broken)
    with pytest.raises(DataError, match="unknown split 'dev'"):
        PreparedDataset(prepared).indices("dev")
