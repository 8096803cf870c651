"""`t2vkit latents` on tiny trained runs: which spaces each run has, what the points are, the PNGs, and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import COMMON

from t2vkit.errors import CheckpointError, DataError, T2VError

pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 't2vkit[viz]')")
pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install 't2vkit[viz]')")

from sklearn.decomposition import PCA

from t2vkit.latents import Cloud, LatentsConfig, Panel, Space, draw, latents, project, require_viz

T2VKIT = str(Path(sys.executable).parent / "t2vkit")
# The tiny runs' data set has 24 training clips; t-SNE at sklearn's fewest iterations.
FAST = dict(split="train", per_bucket=0, tsne_iterations=250, figsize=(6.0, 4.0), dpi=50)


def quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def dataset(stage1) -> Path:
    return stage1.parent / "syncdraw"


@pytest.fixture(scope="module")
def drawn(aligned, dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("latents") / "progressive"
    return out, latents(aligned, dataset, out, LatentsConfig(methods=("pca", "tsne"), **FAST), echo=quiet)


def png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.size


def test_a_progressive_run_draws_text_shared_and_video_spaces_with_each_method(drawn):
    out, result = drawn
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{s}-{m}.png" for s in ("text", "shared", "video") for m in ("pca", "tsne"))
    for path in out.iterdir():
        assert path.stat().st_size > 1000
        assert png_size(path) == (300, 200)  # figsize × dpi
    assert result.notes == []
    assert [s.key for s in result.spaces] == ["text", "shared", "video"]
    shared, video = result.spaces[1], result.spaces[2]
    assert [c.kind for c in shared.clouds] == [c.kind for c in video.clouds] == ["real", "mapped"]
    assert "G_s(M(z_t))" in video.clouds[1].label and "M(z_t)" in shared.clouds[1].label
    for space in result.spaces:
        assert all(len(c.points) == len(c.buckets) == result.clips == 24 for c in space.clouds)
    tsne = next(p for p in result.panels if p.method == "tsne" and p.space.key == "video")
    assert "perplexity" in tsne.settings and "250 iterations" in tsne.settings


def test_pca_coordinates_are_sklearns_on_the_joined_cloud(drawn):
    _, result = drawn
    for panel in (p for p in result.panels if p.method == "pca"):
        points = np.concatenate([c.points for c in panel.space.clouds])
        expected = PCA(n_components=2, random_state=0).fit_transform(points)
        np.testing.assert_allclose(np.concatenate(panel.coords), expected, rtol=1e-5, atol=1e-6)
        assert [len(c) for c in panel.coords] == [len(c.points) for c in panel.space.clouds]


@torch.no_grad()
def test_the_points_are_the_stage1_encoders_latents_and_the_aligners_predictions(drawn, aligned, dataset):
    from t2vkit.data.store import PreparedDataset
    from t2vkit.data.torch_dataset import clip_to_tensor
    from t2vkit.pipeline import Pipeline

    _, result = drawn
    data = PreparedDataset(dataset)
    indices = data.indices("train")
    pipeline = Pipeline.from_run(aligned)
    video = torch.stack([clip_to_tensor(data.clips[i]) for i in indices])
    text = pipeline.encoder.encode(data.captions(indices))
    real, mapped = result.spaces[2].clouds
    np.testing.assert_allclose(real.points, pipeline.decoder.encode(video).flatten(1).numpy(), atol=1e-5)
    np.testing.assert_allclose(mapped.points, pipeline.sampler.sample(text).flatten(1).numpy(), atol=1e-5)
    np.testing.assert_allclose(result.spaces[0].clouds[0].points, text.pooled.numpy(), atol=1e-5)
    assert real.buckets.tolist() == [data.records[i].bucket for i in indices]


def test_a_stage1_run_draws_the_real_clips_video_space_only(stage1, dataset, tmp_path):
    result = latents(stage1, dataset, tmp_path, LatentsConfig(methods=("pca",), **FAST), echo=quiet)
    assert [p.name for p in tmp_path.iterdir()] == ["video-pca.png"]
    assert [c.kind for c in result.spaces[0].clouds] == ["real"]
    assert any("stage-1 run" in note for note in result.notes)


def test_a_diffusion_run_draws_its_text_space_and_the_real_clips_latents(diffusion, tmp_path):
    config = LatentsConfig(methods=("pca",), **FAST)
    result = latents(diffusion, diffusion.parent / "syncdraw", tmp_path, config, echo=quiet)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text-pca.png", "video-pca.png"]
    assert [c.kind for c in result.spaces[-1].clouds] == ["real"]
    assert any("is a diffusion run (no aligner)" in note for note in result.notes)


def test_an_aligner_without_a_shared_space_skips_that_panel_with_a_note(stage1, dataset, tmp_path):
    from t2vkit.training.config import Sources
    from t2vkit.training.run import TrainRequest, train

    run = tmp_path / "direct"
    overrides = (*COMMON, "train.max_steps=1", "aligner.hidden=16", "train.noise_variants=2")
    train(TrainRequest(stage="align", dataset=dataset, out=run, aligner="direct", encoder="minilm", video=stage1,
                       device="cpu", sources=Sources(overrides=overrides)))  # fmt: skip
    result = latents(run, dataset, tmp_path / "fig", LatentsConfig(methods=("pca",), **FAST), echo=quiet)
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == ["text-pca.png", "video-pca.png"]
    assert any("the direct aligner has none" in note for note in result.notes)
    assert result.spaces[-1].clouds[1].label == "mapped: M(z_t)"


def test_umap(drawn, aligned, dataset, tmp_path):
    pytest.importorskip("umap", reason="umap-learn is not installed (pip install 't2vkit[viz]')")
    result = latents(aligned, dataset, tmp_path, LatentsConfig(methods=("umap",), **FAST), echo=quiet)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared-umap.png", "text-umap.png", "video-umap.png"]
    assert all(png_size(p) == (300, 200) for p in result.paths)
    assert all(np.isfinite(np.concatenate(p.coords)).all() for p in result.panels)


def test_without_umap_that_method_is_skipped_and_the_others_drawn(aligned, dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap → ImportError
    result = latents(aligned, dataset, tmp_path, LatentsConfig(methods=("pca", "umap"), **FAST), echo=quiet)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared-pca.png", "text-pca.png", "video-pca.png"]
    assert any(note.startswith("umap: umap-learn is not installed") and "t2vkit[viz]" in note for note in result.notes)


@pytest.mark.parametrize("module", ["matplotlib", "sklearn"])
def test_without_matplotlib_or_sklearn_one_error_names_the_viz_extra(module, aligned, dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(T2VError, match=r'pip install "t2vkit\[viz\]"'):
        require_viz()
    with pytest.raises(T2VError, match="scikit-learn" if module == "sklearn" else "matplotlib"):
        latents(aligned, dataset, tmp_path / "out", LatentsConfig(**FAST), echo=quiet)
    assert not (tmp_path / "out").exists()


def test_bad_input_gets_one_clear_error(aligned, dataset, mnist_dir, tmp_path):
    from t2vkit.data.prepare import prepare

    config = LatentsConfig(methods=("pca",), **FAST)
    with pytest.raises(T2VError, match="unknown projection method 'lda'; methods: pca, tsne, umap"):
        latents(aligned, dataset, tmp_path / "a", LatentsConfig(methods=("pca", "lda")), echo=quiet)
    with pytest.raises(CheckpointError, match="run directory not found"):
        latents(tmp_path / "nothing", dataset, tmp_path / "a", config, echo=quiet)
    with pytest.raises(DataError, match="unknown split 'dev'"):
        latents(aligned, dataset, tmp_path / "a", LatentsConfig(methods=("pca",), split="dev"), echo=quiet)
    with pytest.raises(T2VError, match="--per-bucket must be 0"):
        latents(aligned, dataset, tmp_path / "a", LatentsConfig(methods=("pca",), per_bucket=-1), echo=quiet)
    (tmp_path / "file").write_text("x")
    with pytest.raises(T2VError, match="is a file"):
        latents(aligned, dataset, tmp_path / "file", config, echo=quiet)
    other = tmp_path / "small"
    prepare("syncdraw-mm", other, {"mnist": mnist_dir, "num_train": 2, "num_val": 0, "num_test": 2, "frames": 8,
                                   "size": 32})  # fmt: skip
    with pytest.raises(DataError, match=r"has clips of shape \[8, 32, 32, 1\].*trained on \[16, 64, 64, 1\]"):
        latents(aligned, other, tmp_path / "a", config, echo=quiet)
    assert not (tmp_path / "a").exists()


def test_few_points_cap_perplexity_and_too_few_skip_the_method():
    rng = np.random.default_rng(0)
    config = LatentsConfig(tsne_iterations=250)
    points = np.repeat(rng.normal(size=(10, 6)), 3, axis=0)  # 10 distinct points, each three times
    coords, axes, settings = project(points, "tsne", config)
    assert coords.shape == (30, 2) and axes == ("t-SNE 1", "t-SNE 2")
    assert "perplexity 3 (capped" in settings and "10 distinct of 30 points" in settings
    np.testing.assert_array_equal(coords[0], coords[1])  # a duplicate sits on its point
    with pytest.raises(ValueError, match="at least 4 distinct points, got 3"):
        project(np.repeat(rng.normal(size=(3, 6)), 5, axis=0), "tsne", config)


def test_many_buckets_get_a_colour_bar(tmp_path):
    rng = np.random.default_rng(0)
    buckets = rng.integers(0, 150, 200)
    space = Space("video", "Video latent space", [Cloud("real: E_v(x)", "real", rng.normal(size=(200, 8)), buckets)])
    config = LatentsConfig(figsize=(6.0, 4.0), dpi=50)
    coords, axes, settings = project(space.clouds[0].points, "pca", config)
    path = draw(Panel(space, "pca", [coords], axes, settings), [f"person {i} walking" for i in range(150)],
                tmp_path / "v.png", "a run", config)  # fmt: skip
    assert png_size(path) == (300, 200)


def test_the_command_line(aligned, dataset, tmp_path):
    out = tmp_path / "fig"
    args = [T2VKIT, "latents", str(aligned), "--dataset", str(dataset), "--out", str(out), "--methods", "pca",
            "--split", "train", "--per-bucket", "1"]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "3 figures of" in result.stdout and (out / "video-pca.png").is_file()
    bad = subprocess.run([*args[:-1], "x"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2  # typer: --per-bucket takes a whole number
    wrong = subprocess.run([*args[:8], "pca,nope"], capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 1 and wrong.stderr.strip().splitlines() == [
        "error: unknown projection method 'nope'; methods: pca, tsne, umap"
    ]
    helped = subprocess.run([T2VKIT, "latents", "--help"], capture_output=True, text=True, timeout=300)
    assert helped.returncode == 0 and "Examples" in helped.stdout and "t2vkit[viz]" in helped.stdout
