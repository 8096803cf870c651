"""Full-reference quality of videos, frame by frame: PSNR and SSIM (torchmetrics does the math).

Videos are float ``[B, C, T, H, W]`` in [-1, 1]. Like the paper's tables, a video's score is the
mean over its frames; a set's score is the mean (± std) over videos.
"""

from __future__ import annotations

import torch

# A frame reproduced exactly would have infinite PSNR; cap it so one such frame cannot swamp a mean.
MAX_PSNR = 100.0


def _frames(video: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] in [-1, 1] → [B*T, C, H, W] in [0, 1]."""
    b, c, t, h, w = video.shape
    return ((video.float().clamp(-1, 1) + 1) / 2).transpose(1, 2).reshape(b * t, c, h, w)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per video ``[B]``, the mean of its frames' PSNR (data range 1)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    b, t = pred.shape[0], pred.shape[2]
    per_frame = peak_signal_noise_ratio(_frames(pred), _frames(target), data_range=1.0, reduction="none", dim=(1, 2, 3))
    return per_frame.clamp(max=MAX_PSNR).view(b, t).mean(dim=1)


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per video ``[B]`` (Gaussian window 11, σ 1.5, data range 1), the mean over its frames."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    b, t = pred.shape[0], pred.shape[2]
    per_frame = structural_similarity_index_measure(_frames(pred), _frames(target), data_range=1.0, reduction="none")
    return per_frame.view(b, t).mean(dim=1)
