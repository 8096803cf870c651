from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kth_synthetic import blob_video, write_avi

from t2vkit.data import PreparedDataset
from t2vkit.data.prepare import prepare
from t2vkit.errors import DataError
from t2vkit.plugins.datasets.kth import (
    LEFT_TO_RIGHT,
    RIGHT_TO_LEFT,
    measure_direction,
    parse_person_split,
    parse_sequences,
)

# ---------------------------------------------------------------- the real sequences file


@pytest.fixture(scope="module")
def real(kth_sequences: Path) -> tuple[str, list, dict]:
    text = kth_sequences.read_text()
    return text, parse_sequences(text), parse_person_split(text)


def test_real_sequences_file_parses_in_full(real):
    _, entries, _ = real
    assert len(entries) == 599  # person13_handclapping_d3 is *missing*
    assert sum(len(e.ranges) for e in entries) == 2391
    assert all(1 <= first <= last for e in entries for first, last in e.ranges)
    assert entries[0].video == "person01_boxing_d1_uncomp.avi"
    assert entries[0].ranges == ((1, 95), (96, 185), (186, 245), (246, 360))


def test_real_moving_actions_have_every_video_with_four_subsequences(real):
    _, entries, _ = real
    moving = [e for e in entries if e.action in ("walking", "jogging", "running")]
    assert len(moving) == 300
    assert sum(len(e.ranges) for e in moving) == 1200
    for action in ("walking", "jogging", "running"):
        names = {(e.person, e.scenario) for e in moving if e.action == action}
        assert names == {(p, f"d{d}") for p in range(1, 26) for d in range(1, 5)}
    assert {len(e.ranges) for e in moving} == {4}


def test_real_header_split(real):
    _, _, split = real
    persons = {s: {p for p, v in split.items() if v == s} for s in ("train", "val", "test")}
    assert persons["train"] == set(range(11, 19))
    assert persons["val"] == {19, 20, 21, 23, 24, 25, 1, 4}
    assert persons["test"] == {22, 2, 3, 5, 6, 7, 8, 9, 10}


def test_real_stride_one_counts_match_the_module_docstring(real):
    _, entries, split = real
    counts = {"train": 0, "val": 0, "test": 0}
    for e in entries:
        if e.action in ("walking", "jogging", "running"):
            for first, last in e.ranges:
                counts[split[e.person]] += max(0, last - first + 1 - 16 + 1)
    assert counts == {"train": 24371, "val": 22946, "test": 25174}


def test_parser_takes_crlf_tabs_spaces_and_refuses_garbage():
    text = ("Training: person01\r\nTest: person02, 03 \r\n\r\n"
            "person01_walking_d1 \t\tframes\t1-20,21-40 , 50 - 90\r\n"
            "person02_running_d4    \tframes\t5-60\r\n"
            "person13_handclapping_d3\t*missing*\r\n")  # fmt: skip
    entries = parse_sequences(text)
    assert [(e.name, e.ranges) for e in entries] == [
        ("person01_walking_d1", ((1, 20), (21, 40), (50, 90))),
        ("person02_running_d4", ((5, 60),)),
    ]
    assert parse_person_split(text) == {1: "train", 2: "test", 3: "test"}
    with pytest.raises(DataError, match="line 2: 'x-9'"):
        parse_sequences("\nperson01_walking_d1\tframes\tx-9\n")
    with pytest.raises(DataError, match="no person split"):
        parse_person_split("person01_walking_d1\tframes\t1-9\n")
    with pytest.raises(DataError, match="person 4 is in both"):
        parse_person_split("Training: person04\nTest: person04\n")


# ---------------------------------------------------------------- direction measurement


def test_direction_is_measured_from_the_motion():
    right = blob_video([2 + 1.5 * t for t in range(30)], noise=6)[..., None]
    assert measure_direction(right) == LEFT_TO_RIGHT
    assert measure_direction(right[::-1]) == RIGHT_TO_LEFT
    assert measure_direction(np.repeat(right, 3, axis=-1)) == LEFT_TO_RIGHT  # RGB works the same
    still = blob_video([30] * 30, noise=6)[..., None]
    assert measure_direction(still) is None
    jitter = blob_video([30 + (t % 2) for t in range(30)])[..., None]  # moves, but goes nowhere
    assert measure_direction(jitter) is None


# ---------------------------------------------------------------- end to end on written videos

SEQUENCES = (
    "Header text as in the official file.\r\n\r\n"
    "Training:   person02, 07\r\n"
    "Validation: person03\r\n"
    "Test:       person05 \r\n\r\n"
    "person02_boxing_d1\t\tframes\t1-40\r\n"  # not a moving action: ignored, not counted
    "person02_walking_d1\t\tframes\t1-40, 41-50, 41-60\r\n"  # 7 clips; too short; no motion
    "person03_running_d4    \tframes\t1-30, 50-70\r\n"  # 4 clips; past the end of a 45-frame video
    "person05_jogging_d2\t\tframes\t1-100\r\n"  # no video
)


@pytest.fixture(scope="module")
def kth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kth")
    (folder / "00sequences.txt").write_bytes(SEQUENCES.encode())
    walking = blob_video([2 + 1.5 * t for t in range(40)] + [62.0] * 20)  # right, then still
    write_avi(folder / "person02_walking_d1_uncomp.avi", walking)
    (folder / "running").mkdir()  # the official zips unpack into one folder per action
    running = blob_video([66 - 1.4 * t for t in range(45)])  # left
    write_avi(folder / "running" / "person03_running_d4_uncomp.avi", running)
    return folder


def test_prepare_cuts_captions_and_counts(kth_dir: Path, tmp_path: Path):
    result = prepare("kth", tmp_path / "kth", {"kth": kth_dir})
    data = PreparedDataset(tmp_path / "kth")
    assert data.clip_shape == (16, 64, 64, 1)
    assert result.meta["splits"] == {"train": 7, "val": 4, "test": 0}
    assert result.meta["skipped"] == {
        "subsequence shorter than 16 frames": 1,
        "too little motion to tell the direction": 1,
        "subsequence past the end of the video": 1,
        "video file missing": 1,
    }
    assert data.buckets == ["person 2 is walking left to right", "person 3 is running right to left"]
    walking = [r for r in data.records if r.attributes["person"] == 2]
    assert {r.caption for r in walking} == {"person 2 is walking left to right"}
    assert {r.split for r in walking} == {"train"}
    assert [r.attributes["start"] for r in walking] == [1, 5, 9, 13, 17, 21, 25]
    assert walking[0].attributes == {"person": 2, "action": "walking", "direction": LEFT_TO_RIGHT,
                                     "scenario": "d1", "subsequence": [1, 40], "start": 1}  # fmt: skip
    assert walking[0].source == "person02_walking_d1_uncomp.avi"
    running = [r for r in data.records if r.attributes["person"] == 3]
    assert [(r.caption, r.split, r.attributes["scenario"]) for r in running] == [
        ("person 3 is running right to left", "val", "d4")
    ] * 4
    # The clip shows the blob moving right, frame by frame.
    first = np.asarray(data.clips[0][..., 0], dtype=float)
    columns = np.arange(first.shape[2])
    centres = [(f > 120).sum(axis=0) @ columns / (f > 120).sum() for f in first]
    assert np.all(np.diff(centres) > 0)


def test_stride_sets_the_number_of_clips(kth_dir: Path, tmp_path: Path):
    result = prepare("kth", tmp_path / "kth", {"kth": kth_dir, "stride": 8, "channels": 3, "size": 32})
    assert result.meta["splits"] == {"train": 4, "val": 2, "test": 0}  # 40 frames: 0, 8, 16, 24; 30: 0, 8
    assert result.meta["clip_shape"] == [16, 32, 32, 3]


def test_missing_inputs_are_clear_errors(kth_dir: Path, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "00sequences.txt").write_bytes(SEQUENCES.encode())
    with pytest.raises(DataError, match=r"no KTH video found in .*empty.*person\{01\.\.25\}_"):
        prepare("kth", tmp_path / "out", {"kth": empty})
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match=r"KTH folder not found.*--kth"):
        prepare("kth", tmp_path / "out", {"kth": tmp_path / "nowhere"})
    with pytest.raises(DataError, match=r"00sequences\.txt.*-o sequences=FILE"):
        prepare("kth", tmp_path / "out", {"kth": kth_dir, "sequences": tmp_path / "00sequences.txt"})
    with pytest.raises(DataError, match="actions must be among"):
        prepare("kth", tmp_path / "out", {"kth": kth_dir, "actions": ["boxing"]})
