"""The example third-party plugin (examples/t2vkit-plugin-example), tested as CI installs it.

These tests fail, not skip, when the package is not installed, so a CI that forgets to install it
cannot pass unnoticed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from t2vkit import registry
from t2vkit.data import PreparedDataset
from t2vkit.errors import ConfigError
from t2vkit.interfaces import ClipSink, TextEncoder

DIST = "t2vkit-plugin-example"
CAPTION = re.compile(
    r"^a (red|green|blue|yellow|magenta|cyan) square is moving (left and right|up and down)$"
)
BACKGROUND = (16, 16, 24)  # the dark canvas


@pytest.fixture(autouse=True)
def _example_installed() -> None:
    try:
        metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{DIST} is not installed; run `pip install ./examples/t2vkit-plugin-example` first")


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run this environment's ``t2vkit`` command, with every plugin loaded unless ``env`` says otherwise."""
    script = Path(sys.executable).with_name("t2vkit")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "t2vkit"]
    full_env = {k: v for k, v in os.environ.items() if k != "T2VKIT_LOAD_PLUGINS"} | (env or {})
    return subprocess.run(
        [*command, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120
    )


def listing(tmp_path: Path, env: dict[str, str] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    result = run_cli("plugins", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    return {(row["kind"], row["name"]): row for row in json.loads(result.stdout)}


class Collect(ClipSink):
    """Keeps what a builder writes, for looking at it without going through the prepared store."""

    def __init__(self) -> None:
        self.clips: list[tuple[np.ndarray, str, str, str, dict[str, Any]]] = []

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass

    def add(
        self,
        clip: np.ndarray,
        caption: str,
        bucket: str,
        split: str,
        attributes: dict[str, Any] | None = None,
        source: str = "",
    ) -> None:
        self.clips.append((clip.copy(), caption, bucket, split, attributes or {}))

    def skip(self, reason: str) -> None:
        raise AssertionError(f"shapes skipped a clip: {reason}")


def build_shapes(**options: Any) -> Collect:
    sink = Collect()
    registry.create("dataset", "shapes", options).build(sink)
    return sink


def square_position(frame: np.ndarray) -> tuple[int, int]:
    """Top-left corner of the non-background pixels of a frame."""
    ys, xs = np.nonzero((frame != BACKGROUND).any(axis=-1))
    return int(ys.min()), int(xs.min())


# --------------------------------------------------------------------------- discovery


def test_plugins_lists_the_example_with_its_package(tmp_path: Path) -> None:
    rows = listing(tmp_path)
    version = metadata.version(DIST)
    for key in (("dataset", "shapes"), ("encoder", "hashing")):
        assert key in rows, f"{key} missing from `t2vkit plugins --json`: {sorted(rows)}"
        assert rows[key]["package"] == DIST
        assert rows[key]["version"] == version
        assert rows[key]["status"] == "ok"


def test_load_plugins_env_hides_the_example_but_keeps_the_builtins(tmp_path: Path) -> None:
    builtin_only = listing(tmp_path, env={"T2VKIT_LOAD_PLUGINS": "t2vkit"})
    assert ("dataset", "syncdraw-mm") in builtin_only
    assert not any(row["package"] == DIST for row in builtin_only.values())
    result = run_cli("shapes-preview", "--out", "x.png", cwd=tmp_path, env={"T2VKIT_LOAD_PLUGINS": "t2vkit"})
    assert result.returncode != 0 and not (tmp_path / "x.png").exists()


def test_help_lists_the_command_without_importing_heavy_modules(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from t2vkit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "heavy = [m for m in ('torch', 't2vkit_plugin_example.hashing', 't2vkit_plugin_example.shapes')"
        " if m in sys.modules]\n"
        "assert not heavy, f't2vkit --help imported {heavy}'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "T2VKIT_LOAD_PLUGINS"} | {"COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "shapes-preview" in result.stdout


# --------------------------------------------------------------------------- the shapes data set


def test_prepare_shapes_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "shapes"
    result = run_cli("data", "prepare", "shapes", "--out", str(out), "--num-train", "20", "--num-val", "6",
                     "--num-test", "4", "--seed", "3", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr

    data = PreparedDataset(out)
    assert data.name == "shapes"
    assert data.meta["generator"].startswith(DIST)
    assert data.clip_shape == (16, 64, 64, 3)
    assert data.meta["splits"] == {"train": 20, "val": 6, "test": 4}
    assert len(data.indices("val")) == 6
    for i, record in enumerate(data.records):
        match = CAPTION.match(record.caption)
        assert match, record.caption
        assert data.buckets[record.bucket] == record.caption
        assert (record.attributes["colour"], record.attributes["motion"]) == match.groups()
        clip = np.asarray(data.clips[i])
        square = (clip != BACKGROUND).any(axis=-1)  # [T, H, W]
        assert (square.sum(axis=(1, 2)) == 12 * 12).all(), "one whole 12×12 square on the canvas per frame"
        assert (clip[square] == clip[square][0]).all(), "of one colour"
    assert len(data.buckets) == len(set(data.captions())) > 1


def test_shapes_clips_match_their_captions() -> None:
    sink = build_shapes(num_train=24, num_val=0, num_test=0, seed=1)
    colours = {"red": (230, 40, 40), "blue": (60, 100, 245)}  # two of the palette, spot-checked
    for clip, text, bucket, split, attributes in sink.clips:
        assert bucket == text and split == "train"
        positions = np.array([square_position(frame) for frame in clip])  # [T, (y, x)]
        moving, still = (1, 0) if attributes["motion"] == "left and right" else (0, 1)
        assert len(set(positions[:, still])) == 1, f"{text}: the other coordinate must stay fixed"
        steps = np.abs(np.diff(positions[:, moving]))
        assert steps.max() <= abs(attributes["velocity"]) and steps.sum() > 0, f"{text}: should move"
        if attributes["colour"] in colours:
            y, x = positions[0]
            assert tuple(clip[0, y, x]) == colours[attributes["colour"]]


def test_shapes_is_deterministic_per_seed_and_split() -> None:
    first = build_shapes(num_train=8, num_val=4, num_test=4, seed=5)
    again = build_shapes(num_train=8, num_val=4, num_test=4, seed=5)
    other_seed = build_shapes(num_train=8, num_val=4, num_test=4, seed=6)
    more_train = build_shapes(num_train=12, num_val=4, num_test=4, seed=5)

    def clips(sink: Collect, split: str) -> np.ndarray:
        return np.stack([clip for clip, _, _, s, _ in sink.clips if s == split])

    for split in ("train", "val", "test"):
        assert np.array_equal(clips(first, split), clips(again, split))
        assert not np.array_equal(clips(first, split), clips(other_seed, split))
    # More training clips add clips; they change neither the first ones nor val and test.
    assert np.array_equal(clips(first, "train"), clips(more_train, "train")[:8])
    assert np.array_equal(clips(first, "val"), clips(more_train, "val"))
    assert np.array_equal(clips(first, "test"), clips(more_train, "test"))


def test_shapes_options_are_checked() -> None:
    sink = build_shapes(num_train=10, num_val=0, num_test=0, colours=["green"], size=32, square=8, frames=4)
    assert {attributes["colour"] for *_, attributes in sink.clips} == {"green"}
    assert {clip.shape for clip, *_ in sink.clips} == {(4, 32, 32, 3)}
    with pytest.raises(ConfigError, match="pink"):
        registry.create("dataset", "shapes", {"colours": ["red", "pink"]})
    with pytest.raises(ConfigError, match="square < size"):
        registry.create("dataset", "shapes", {"square": 64})
    with pytest.raises(ConfigError, match="min_speed <= max_speed"):
        registry.create("dataset", "shapes", {"min_speed": 5, "max_speed": 3})


# --------------------------------------------------------------------------- the hashing encoder

TEXTS = [
    "a red square is moving left and right",
    "a red square is moving up and down",
    "the weather is lovely today",
    "",
]


def test_hashing_encoder_contract() -> None:
    encoder = registry.create("encoder", "hashing", {"dim": 32, "seed": 1})
    assert isinstance(encoder, TextEncoder) and isinstance(encoder, torch.nn.Module)
    assert encoder.dim == 32 and not any(p.requires_grad for p in encoder.parameters())

    out = encoder.encode(TEXTS)
    assert out.pooled.shape == (4, 32)
    assert out.tokens.shape == (4, 8, 32) and out.mask.shape == (4, 8) and out.mask.dtype == torch.bool
    assert out.mask.sum(dim=1).tolist() == [8, 8, 5, 1]  # words per text; an empty text has one token
    assert torch.allclose(out.pooled.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert torch.allclose(out.tokens[out.mask].norm(dim=-1), torch.ones(int(out.mask.sum())), atol=1e-5)
    assert not out.tokens[~out.mask].any(), "padding positions must be zero"

    similarity = out.pooled @ out.pooled.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3, "texts sharing most words should be the closest"
    assert len({tuple(v.tolist()) for v in out.pooled}) == 4, "different texts must differ"
    # Case and punctuation are not words.
    assert torch.allclose(
        encoder.encode(["A red square, is moving LEFT and right!"]).pooled[0], out.pooled[0]
    )


def test_hashing_encoder_is_deterministic_and_names_its_config() -> None:
    first = registry.create("encoder", "hashing", {"seed": 7})
    again = registry.create("encoder", "hashing", {"seed": 7})
    other = registry.create("encoder", "hashing", {"seed": 8})
    assert first.dim == 64  # the default
    assert first.identity == again.identity != other.identity
    assert "hashing" in first.identity and "seed=7" in first.identity and "dim=64" in first.identity
    a, b, c = (enc.encode(TEXTS[:2]) for enc in (first, again, other))
    assert torch.equal(a.pooled, b.pooled) and torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.pooled, c.pooled)
    with pytest.raises(ConfigError, match="width"):
        registry.create("encoder", "hashing", {"width": 3})


def test_hashing_encoder_truncates_long_texts_with_a_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("t2vkit"), "propagate", True)  # the CLI's set-up turns it off
    encoder = registry.create("encoder", "hashing", {"max_length": 4})
    with caplog.at_level(logging.WARNING, logger="t2vkit"):
        out = encoder.encode(["one two three four five six", "one two"])
    assert out.tokens.shape[1] == 4 and out.mask.sum(dim=1).tolist() == [4, 2]
    assert torch.equal(out.pooled[0], encoder.encode(["one two three four"]).pooled[0])
    assert [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()] == [
        "hashing: 1 of 2 texts are longer than 4 words and were truncated"
    ]


# --------------------------------------------------------------------------- the command


def test_shapes_preview_writes_a_contact_sheet(tmp_path: Path) -> None:
    from PIL import Image

    result = run_cli("shapes-preview", "--out", "sub/sheet.png", "--count", "3", "--seed", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    captions = re.findall(r"^row \d: (.*)$", result.stdout, flags=re.MULTILINE)
    assert len(captions) == 3 and all(CAPTION.match(c) for c in captions)
    # The rows are the first training clips of the data set with the same seed.
    assert captions == [
        text for _, text, *_ in build_shapes(num_train=3, num_val=0, num_test=0, seed=2).clips
    ]

    with Image.open(tmp_path / "sub" / "sheet.png") as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == (16 * (64 + 2) + 2, 3 * (64 + 2) + 2)  # 16 frames across, 3 clips down
        pixels = np.asarray(image)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) >= 3  # white padding, background, squares
