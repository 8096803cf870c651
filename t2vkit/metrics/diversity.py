"""How varied are the videos generated for one prompt, compared with the real videos of its bucket?

Both sets are embedded by a stage-1 encoder E_v; diversity is the mean pairwise L2 distance of a
set's latents. A deterministic mapping collapses a bucket to one video (ratio 0); a sampler as
varied as the data has ratio 1.
"""

from __future__ import annotations

import torch


def mean_pairwise_distance(latents: torch.Tensor) -> float:
    """Mean L2 distance over the pairs of ``latents`` ``[K, ...]`` (K ≥ 2)."""
    flat = latents.reshape(len(latents), -1).double()
    k = len(flat)
    if k < 2:
        raise ValueError("diversity needs at least two videos")
    distances = torch.cdist(flat, flat)
    return float(distances.sum() / (k * (k - 1)))
