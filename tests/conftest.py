"""Shared fixtures. Real data comes from the workplace's ``../shared/data`` (or $T2VKIT_SHARED_DATA);
tests that need a file that is not there are skipped, naming it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    return Path(os.environ.get("T2VKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


def _need(relative: str) -> Path:
    path = shared_data_root() / relative
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (set T2VKIT_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return _need("mnist")


@pytest.fixture(scope="session")
def kth_sequences() -> Path:
    return _need("kth/00sequences.txt")


@pytest.fixture(scope="session")
def tacos_annotations() -> Path:
    return _need("tacos")


@pytest.fixture(scope="session")
def clip_bpe() -> Path:
    return _need("clip/bpe_simple_vocab_16e6.txt.gz")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every test's on-disk caches out of the user's home; session-wide, so that it is in place before
    module- and session-scoped fixtures (tiny trained runs) embed their captions."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("T2VKIT_CACHE", str(tmp_path_factory.getbasetemp() / "t2vkit-cache"))
        yield


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    """Tiny test networks run faster on one thread than fighting over two busy cores."""
    import torch

    torch.set_num_threads(1)


# --------------------------------------------------------------------------- tiny trained runs, exported to ONNX
# Shared by the export, runtime and bench tests; a test that breaks one works on a copy.

STAGE1 = ("decoder.width=4", "decoder.mults=[1, 2]", "decoder.disc_v_width=4", "decoder.disc_v_scales=1",
          "decoder.disc_z_hidden=[16]")  # fmt: skip
COMMON = ("train.batch_size=4", "train.num_workers=0", "train.eval_every=3", "train.val_clips=8", "train.log_every=1")
TINY_ALIGNER = ("aligner.hidden=16", "aligner.shared_dim=8", "aligner.disc_s_hidden=[16]", "train.noise_variants=2")
TINY_UNET = ("denoiser.base_channels=8", "denoiser.channel_mult=[1, 2]", "denoiser.num_res_blocks=1",
             "denoiser.attention_levels=[1]", "denoiser.heads=2", "denoiser.max_text_len=16")  # fmt: skip


def _tiny_training():
    """What the tiny-run fixtures call (imported when one is first used: conftest stays cheap to load)."""
    from t2vkit.data.prepare import prepare
    from t2vkit.exporters.onnx_export import export_run
    from t2vkit.training.config import Sources
    from t2vkit.training.run import TrainRequest, train

    return prepare, train, TrainRequest, Sources, export_run


@pytest.fixture(scope="session")
def stage1(mnist_dir, tmp_path_factory) -> Path:
    """A tiny wae3d stage-1 run on 24 SyncDraw-MM clips (its data set beside it, in ``syncdraw``)."""
    prepare, train, TrainRequest, Sources, _ = _tiny_training()
    root = tmp_path_factory.mktemp("onnx-s1")
    prepare("syncdraw-mm", root / "syncdraw", {"mnist": mnist_dir, "num_train": 24, "num_val": 8, "num_test": 8})
    train(TrainRequest(stage="video", dataset=root / "syncdraw", out=root / "wae3d", decoder="wae3d", device="cpu",
                       sources=Sources(overrides=(*STAGE1, *COMMON, "train.max_steps=2"))))  # fmt: skip
    return root / "wae3d"


@pytest.fixture(scope="session")
def aligned(stage1, tmp_path_factory) -> Path:
    """A tiny progressive stage-2 run (real MiniLM encoder), exported to ONNX."""
    _, train, TrainRequest, Sources, export_run = _tiny_training()
    out = tmp_path_factory.mktemp("onnx-s2") / "progressive"
    dataset = stage1.parent / "syncdraw"
    overrides = (*COMMON, "train.max_steps=3", *TINY_ALIGNER)
    train(TrainRequest(stage="align", dataset=dataset, out=out, aligner="progressive", encoder="minilm", video=stage1,
                       device="cpu", sources=Sources(overrides=overrides)))  # fmt: skip
    export_run(out, echo=lambda line: None)
    return out


@pytest.fixture(scope="session")
def diffusion(mnist_dir, tmp_path_factory) -> Path:
    """A tiny pixel-space diffusion run (8 frames of 32×32), exported to ONNX."""
    prepare, train, TrainRequest, Sources, export_run = _tiny_training()
    root = tmp_path_factory.mktemp("onnx-vdm")
    prepare("syncdraw-mm", root / "syncdraw", {"mnist": mnist_dir, "num_train": 8, "num_val": 4, "num_test": 4,
                                               "frames": 8, "size": 32})  # fmt: skip
    overrides = (*TINY_UNET, "train.batch_size=4", "train.num_workers=0", "train.eval_every=2", "train.val_clips=4",
                 "train.max_steps=2")  # fmt: skip
    train(TrainRequest(stage="diffusion", dataset=root / "syncdraw", out=root / "pixel", encoder="minilm",
                       device="cpu", sources=Sources(overrides=overrides)))  # fmt: skip
    export_run(root / "pixel", echo=lambda line: None)
    return root / "pixel"
