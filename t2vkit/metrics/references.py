"""Trivial references printed beside every evaluation, so a score can be read against a floor.

- A stage-1 run: the split's per-pixel median clip, scored against every clip (on SyncDraw-MM the
  empty background, which a reconstruction has to beat).
- A text-to-video run: each bucket's per-pixel median clip, the L1-optimal answer of any
  deterministic text → video mapping. On SyncDraw-MM that clip is also the empty background, and it
  scores within the paper's Table 2 range.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from t2vkit.data.torch_dataset import clip_to_tensor
from t2vkit.metrics.bucket import best_matches, weighted_summary
from t2vkit.metrics.quality import psnr, ssim


def bucket_members(data: Any, indices: Any) -> dict[int, list[int]]:
    """Bucket id → the clip indices (of ``indices``) in that bucket."""
    members: dict[int, list[int]] = defaultdict(list)
    for i in indices:
        members[data.records[i].bucket].append(int(i))
    return members


def split_median_reference(data: Any, indices: Any, batch_size: int, sample: int = 512) -> dict[str, float]:
    """PSNR/SSIM of one clip for all: the per-pixel median of (up to ``sample`` of) the split's clips."""
    median = np.median(data.clips[np.asarray(indices[:sample])], axis=0).round().astype(np.uint8)
    reference = clip_to_tensor(median)[None]  # [1, C, T, H, W]
    scores: dict[str, list[torch.Tensor]] = {"psnr": [], "ssim": []}
    for start in range(0, len(indices), batch_size):
        video = torch.stack([clip_to_tensor(data.clips[i]) for i in indices[start : start + batch_size]])
        scores["psnr"].append(psnr(reference.expand_as(video), video))
        scores["ssim"].append(ssim(reference.expand_as(video), video))
    return {key: float(torch.cat(values).mean()) for key, values in scores.items()}


def bucket_median_reference(data: Any, indices: Any) -> dict[str, float]:
    """B-PSNR/B-SSIM of each bucket's per-pixel median clip, weighted by the bucket's size."""
    scores: dict[str, list[float]] = {"b_psnr": [], "b_ssim": []}
    sizes = []
    for members in bucket_members(data, indices).values():
        refs = torch.stack([clip_to_tensor(data.clips[i]) for i in members])  # [R, C, T, H, W]
        for key, value in best_matches(refs.median(dim=0).values[None], refs).items():
            scores[key].append(float(value))
        sizes.append(len(members))
    weights = torch.tensor(sizes, dtype=torch.float64)
    return {key: weighted_summary(torch.tensor(values), weights)[0] for key, values in scores.items()}
