"""Bucket metrics (seed 000, 4.2.2): a generated video is compared with every real video of its
prompt's bucket and the best match is kept, since one text has many valid videos."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from t2vkit.metrics.quality import psnr, ssim

if TYPE_CHECKING:
    from t2vkit.metrics.frame_distance import FrameDistance


def best_matches(generated: torch.Tensor, references: torch.Tensor, chunk: int = 64,
                 perceptual: Mapping[str, FrameDistance] | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """For each generated video ``[G, C, T, H, W]``, its best PSNR and best SSIM (each taken on its
    own) over the ``references`` ``[R, C, T, H, W]`` of its bucket: ``{"b_psnr": [G], "b_ssim": [G]}``.

    ``perceptual`` adds distances where lower is better, so the smallest is kept, under the keys
    given: ``{"b_lpips": load_lpips(...), "b_dists": load_dists(...)}``. Each reference is embedded
    once per group of generated videos (``FrameDistance.closest``), on the metric's device."""
    best = {"b_psnr": [], "b_ssim": []}
    for video in generated:
        scores_p, scores_s = [], []
        for start in range(0, len(references), chunk):
            refs = references[start : start + chunk]
            probe = video[None].expand_as(refs)
            scores_p.append(psnr(probe, refs))
            scores_s.append(ssim(probe, refs))
        best["b_psnr"].append(torch.cat(scores_p).max())
        best["b_ssim"].append(torch.cat(scores_s).max())
    out = {k: torch.stack(v) for k, v in best.items()}
    for key, metric in (perceptual or {}).items():
        out[key] = metric.closest(generated, references)
    return out


def weighted_summary(values: torch.Tensor, weights: torch.Tensor) -> tuple[float, float]:
    """Weighted mean and standard deviation (weights: how many clips each value stands for)."""
    v, w = values.double(), weights.double()
    mean = (v * w).sum() / w.sum()
    return float(mean), float(((v - mean) ** 2 * w).sum().div(w.sum()).sqrt())
