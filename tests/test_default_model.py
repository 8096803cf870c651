"""The default model shipped inside the package (t2vkit/default_model/): it loads, its videos move the way
the prompt says, `t2vkit generate` uses it without --model, and the wheel carries its files.

`python examples/package_default_model.py RUN_DIR` puts a run's files there (docs/default-model.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from t2vkit import default_model
from t2vkit.errors import T2VError

REPO = Path(__file__).resolve().parents[1]
T2VKIT = str(Path(sys.executable).parent / "t2vkit")
UP_DOWN = "digit 3 is moving up and down"
LEFT_RIGHT = "digit 3 is moving left and right"


def model_files() -> list[Path]:
    folder = default_model.path()
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors"))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([T2VKIT, *args], capture_output=True, text=True, cwd=cwd, env=dict(os.environ),
                          timeout=300)  # fmt: skip


def motion_ranges(video: np.ndarray) -> tuple[float, float]:
    """(vertical, horizontal) range in pixels of a ``[T, H, W, C]`` clip's intensity-weighted centre of mass over
    its frames; each frame's median (the background) is subtracted first."""
    frames = video.astype(np.float64).mean(axis=-1)
    weights = np.clip(frames - np.median(frames, axis=(1, 2), keepdims=True), 0, None)
    total = weights.sum(axis=(1, 2)) + 1e-12
    ys, xs = np.mgrid[: frames.shape[1], : frames.shape[2]]
    cy = (weights * ys).sum(axis=(1, 2)) / total
    cx = (weights * xs).sum(axis=(1, 2)) / total
    return float(np.ptp(cy)), float(np.ptp(cx))


def moving_square(vertical: bool, frames: int = 16, size: int = 64, side: int = 12) -> np.ndarray:
    """A bright square bouncing up and down (or left and right) over a dim noisy background, ``[T, H, W, 1]``."""
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 20, size=(frames, size, size, 1)).astype(np.uint8)
    travel = size - side
    for t in range(frames):
        step = round(travel * abs((t / (frames / 2)) % 2 - 1))  # a triangle wave: 0 → travel → 0
        y, x = (step, size // 3) if vertical else (size // 3, step)
        clip[t, y : y + side, x : x + side] = 230
    return clip


@pytest.mark.parametrize("vertical", [True, False])
def test_motion_check_tells_vertical_from_horizontal_motion(vertical):
    dy, dx = motion_ranges(moving_square(vertical))
    assert (dy > dx) == vertical and max(dy, dx) > 30 and min(dy, dx) < 1


def test_without_files_the_default_model_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(default_model, "path", lambda: tmp_path)
    with pytest.raises(T2VError, match=r"^no --model given, and this t2vkit has no default model .*pass --model"):
        default_model.require()


@pytest.mark.parametrize("backend", ["onnx", "trt"])
def test_onnx_and_trt_need_a_model_the_default_one_is_pytorch_only(backend, tmp_path):
    result = run("generate", UP_DOWN, "--backend", backend, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: --backend {backend} needs --model: the default model ships PyTorch weights")
    assert "t2vkit export RUN_DIR" in lines[0] and ("--trt" in lines[0]) == (backend == "trt")
    assert not list(tmp_path.iterdir())


def test_generate_help_leads_with_the_no_model_example():
    result = run("generate", "--help")
    assert result.returncode == 0, result.stderr
    examples = result.stdout.split("Examples:")[1]
    assert re.match(r'\s*t2vkit generate "digit 3 is moving up and down"\s*\n', examples), examples


@pytest.fixture(scope="module")
def pipeline():
    from t2vkit.pipeline import Pipeline

    return Pipeline.from_run(default_model.path(), device="cpu")


@pytest.mark.parametrize("prompt, vertical", [(UP_DOWN, True), (LEFT_RIGHT, False)])
def test_the_default_model_moves_the_digit_as_the_prompt_says(pipeline, prompt, vertical):
    video = pipeline.videos([prompt], seed=0)
    assert list(video.shape) == [1, 16, 64, 64, 1] and video.dtype == np.uint8
    dy, dx = motion_ranges(video[0])
    assert (dy > dx) == vertical, f"{prompt!r}: the centre of mass moves {dy:.1f} px vertically, {dx:.1f} px across"


def test_generate_without_model_writes_an_mp4(tmp_path):
    from t2vkit.video_io import read_video

    result = run("generate", UP_DOWN, "--seed", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    video = tmp_path / "digit-3-is-moving-up-and-down.mp4"
    assert result.stdout.strip() == video.name and video.is_file()
    assert read_video(video).shape[:3] == (16, 64, 64)


def test_the_wheel_carries_the_default_model(tmp_path):
    # Built from a copy of the sources: building in the checkout would leave build/ there, and setuptools puts
    # what a stale build/lib holds (say, model files since removed) into every later wheel.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for folder in ("t2vkit", "plugins", "exporters"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=600)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("t2vkit-*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("t2vkit/default_model/")}
    expected = {f"t2vkit/default_model/{p.name}" for p in model_files()}
    assert "t2vkit/default_model/config.json" in expected and any(n.endswith(".safetensors") for n in expected)
    assert shipped == expected | {"t2vkit/default_model/__init__.py"}


def test_the_shipped_model_was_made_by_the_recipe_in_examples():
    """docs/default-model.md points to examples/default_model.toml as the recipe: keep the two in step."""
    from t2vkit import registry
    from t2vkit.config import to_dict
    from t2vkit.training.config import RESUME_FREE, Sources, layered_tables, plugin_config, stage_train_config

    shipped = json.loads((default_model.path() / "config.json").read_text())
    tables, sets = layered_tables(Sources(preset="quick", config_file=REPO / "examples/default_model.toml"))
    decoder = shipped["decoder"]
    shape = {key: decoder[key] for key in ("channels", "frames", "size")}  # given by the data set
    recipe = plugin_config(registry.get("decoder", "wae3d").factory, "decoder", "wae3d", tables, sets, fixed=shape)
    assert {"name": "wae3d", **to_dict(recipe)} == decoder
    steering = {key.removeprefix("train.") for key in RESUME_FREE if key.startswith("train.")}
    train = to_dict(stage_train_config(tables, sets, "diffusion"))
    assert {k: v for k, v in train.items() if k not in steering} == {
        k: v for k, v in shipped["train"].items() if k not in steering}  # fmt: skip
