from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from t2vkit.data import PreparedDataset
from t2vkit.data.store import ClipWriter
from t2vkit.data.torch_dataset import clip_to_tensor
from t2vkit.errors import ConfigError, DataError
from t2vkit.metrics.probe import (
    ProbeConfig,
    accuracy,
    cache_key,
    discover_tasks,
    hits,
    load_or_train_probe,
    probe_folder,
    split_accuracy,
)

TINY = ProbeConfig(width=4, batch_size=8, epochs=4, lr=1e-2, val_clips=8)
SHAPE = (4, 16, 16, 1)  # T, H, W, C


def _clip(side: str, rng: np.random.Generator) -> np.ndarray:
    """Dim noise with a bright left or right half: trivially separable."""
    clip = rng.integers(0, 60, size=SHAPE, dtype=np.uint8)
    half = slice(0, SHAPE[2] // 2) if side == "left" else slice(SHAPE[2] // 2, None)
    clip[:, :, half] += 150
    return clip


def _write(root, splits=(("train", 32), ("val", 8), ("test", 8)), fingerprint="f" * 64, sides=("left", "right")):
    """A prepared data set: bucket "bright on the left/right", attribute side (fixed by the caption), noise (not)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    writer = ClipWriter(root)
    for split, count in splits:
        for i in range(count):
            side = sides[i % len(sides)]
            attributes = {"side": side, "noise": int(rng.integers(0, 5)), "level": 0.5, "id": i}
            writer.add(_clip(side, rng), f"bright on the {side}", bucket=f"bright on the {side}", split=split,
                       attributes=attributes)  # fmt: skip
    meta = {"dataset": "tiny-sides", "fingerprint": fingerprint} if fingerprint else {"dataset": "tiny-sides"}
    writer.finish(meta)
    return PreparedDataset(root)


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("probe") / "sides")


@pytest.fixture(scope="module")
def trained(sides, tmp_path_factory):
    cache = tmp_path_factory.mktemp("probe-cache")
    return load_or_train_probe(sides, cache_dir=cache, config=TINY), cache


def test_tasks_are_the_attributes_the_caption_fixes_plus_the_bucket(sides):
    tasks = discover_tasks(sides)
    # noise varies within a bucket, level is a float, id differs clip to clip: none is a task
    assert list(tasks) == ["side", "bucket"]
    assert tasks["side"].classes == ["left", "right"]
    assert tasks["bucket"].classes == ["bright on the left", "bright on the right"]
    assert tasks["side"].label_of_bucket == [0, 1] and tasks["bucket"].label_of_bucket == [0, 1]


def test_a_data_set_with_nothing_to_classify_or_no_training_clips_is_refused(tmp_path):
    one_bucket = _write(tmp_path / "one", sides=("left",))
    assert discover_tasks(one_bucket) == {}  # one bucket, and side has a single value
    with pytest.raises(DataError, match="gives the probe nothing to classify"):
        load_or_train_probe(one_bucket, cache_dir=tmp_path / "cache", config=TINY)
    with pytest.raises(DataError, match="too small for the probe's 32×32 patches"):
        load_or_train_probe(_write(tmp_path / "two"), cache_dir=tmp_path / "cache", config=ProbeConfig(patch=32))
    with pytest.raises(ConfigError, match="probe config needs"):
        ProbeConfig(epochs=0)
    no_train = _write(tmp_path / "notrain", splits=(("test", 4),))
    with pytest.raises(DataError, match="has no training clips"):
        load_or_train_probe(no_train, cache_dir=tmp_path / "cache", config=TINY)


def test_a_tiny_probe_learns_a_separable_set(sides, trained):
    probe, _ = trained
    assert probe.tasks == {"side": ["left", "right"], "bucket": ["bright on the left", "bright on the right"]}
    assert not probe.from_cache and probe.info["epochs"] >= 1
    assert split_accuracy(probe, sides, "test") == {"side": 1.0, "bucket": 1.0, "all": 1.0}
    # the same through accuracy() on a batch of videos, and swapped buckets are all wrong
    idx = sides.indices("test")
    videos = torch.stack([clip_to_tensor(sides.clips[i]) for i in idx])
    buckets = torch.tensor([sides.records[i].bucket for i in idx])
    assert probe.accuracy(videos, buckets)["all"] == 1.0
    assert probe.accuracy(videos, 1 - buckets) == {"side": 0.0, "bucket": 0.0, "all": 0.0}
    with pytest.raises(DataError, match=r"takes videos \[B, 1, 4, 16, 16\]"):
        probe.predict(videos[:, :, :2])


def test_expected_labels_come_from_the_buckets(trained):
    probe, _ = trained
    expected = probe.expected([1, 0, 1])
    assert {k: v.tolist() for k, v in expected.items()} == {"side": [1, 0, 1], "bucket": [1, 0, 1]}
    with pytest.raises(DataError, match=r"bucket ids must be in 0\.\.1"):
        probe.expected([2])


def test_accuracy_math_on_hand_made_predictions():
    predicted = {"a": torch.tensor([0, 1, 1, 0]), "b": torch.tensor([2, 2, 0, 1])}
    expected = {"a": torch.tensor([0, 1, 0, 0]), "b": torch.tensor([2, 1, 0, 1])}
    right = hits(predicted, expected)
    assert right["all"].tolist() == [True, False, False, True]
    assert accuracy(right) == {"a": 0.75, "b": 0.75, "all": 0.5}
    with pytest.raises(DataError, match="no videos"):
        accuracy(hits({"a": torch.zeros(0, dtype=torch.long)}, {"a": torch.zeros(0, dtype=torch.long)}))


def test_the_cache_is_reused_and_a_changed_key_retrains(sides, trained, tmp_path, caplog):
    probe, cache = trained
    again = load_or_train_probe(sides, cache_dir=cache, config=TINY)
    assert again.from_cache and again.info == probe.info
    x = torch.rand(3, 1, *SHAPE[:3]) * 2 - 1
    assert all(torch.equal(a, b) for a, b in zip(probe.predict(x).values(), again.predict(x).values(), strict=True))

    other_config = load_or_train_probe(sides, cache_dir=cache, config=ProbeConfig(**{**vars(TINY), "seed": 1}))
    assert not other_config.from_cache
    refingerprinted = _write(tmp_path / "other", fingerprint="e" * 64)
    assert not load_or_train_probe(refingerprinted, cache_dir=cache, config=TINY).from_cache
    assert len(list(cache.iterdir())) == 3  # one folder per key

    # a cache whose JSON does not vouch for this key, or is not JSON at all, is retrained, with a warning
    folder = probe_folder(sides, cache_key(sides, TINY, discover_tasks(sides)), cache)
    meta_path = folder / "probe.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "key": {**meta["key"], "fingerprint": "0" * 64}}))
    with caplog.at_level(logging.WARNING, logger="t2vkit"):
        assert not load_or_train_probe(sides, cache_dir=cache, config=TINY).from_cache
    assert "training the probe again" in caplog.text
    assert load_or_train_probe(sides, cache_dir=cache, config=TINY).from_cache  # rewritten
    meta_path.write_text("{not json")
    assert not load_or_train_probe(sides, cache_dir=cache, config=TINY).from_cache


def test_the_default_cache_lives_under_t2vkit_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("T2VKIT_CACHE", str(tmp_path / "c"))
    data = _write(tmp_path / "d", splits=(("train", 8),))
    config = ProbeConfig(**{**vars(TINY), "epochs": 1})
    assert not load_or_train_probe(data, config=config).from_cache
    assert [p.name[:11] for p in (tmp_path / "c" / "probes").iterdir()] == ["tiny-sides-"]
    assert load_or_train_probe(data, config=config).from_cache
    unfingerprinted = _write(tmp_path / "u", splits=(("train", 8),), fingerprint=None)
    assert not load_or_train_probe(unfingerprinted, config=config).from_cache
    assert not load_or_train_probe(unfingerprinted, config=config).from_cache  # never cached
