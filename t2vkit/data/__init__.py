"""Prepared data sets: the on-disk store, the prepare step, and the PyTorch view (import it from
``t2vkit.data.torch_dataset``; this package itself does not import torch)."""

from t2vkit.data.store import SPLITS, ClipRecord, ClipWriter, PreparedDataset

__all__ = ["SPLITS", "ClipRecord", "ClipWriter", "PreparedDataset"]
