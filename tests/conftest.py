"""Shared fixtures. Real data comes from the workplace's ``../shared/data`` (or $T2VKIT_SHARED_DATA);
tests that need a file that is not there are skipped, naming it."""

from __future__ import annotations

import os
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


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test's on-disk caches out of the user's home."""
    monkeypatch.setenv("T2VKIT_CACHE", str(tmp_path_factory.getbasetemp() / "t2vkit-cache"))


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    """Tiny test networks run faster on one thread than fighting over two busy cores."""
    import torch

    torch.set_num_threads(1)
