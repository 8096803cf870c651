"""What LPIPS and DISTS share: a learned distance between frames, split into per-frame features and
their comparison, so that a bucket's reference clips are embedded once and compared with every
generated video (``t2vkit.metrics.bucket``), and the video-level score: the mean over frames.

Videos are float ``[B, C, T, H, W]`` in [-1, 1] with C = 1 (repeated to RGB) or 3, clamped to
[-1, 1] like PSNR/SSIM's. Lower is better for both metrics.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def rgb(frames: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` with C = 1 or 3 → ``[N, 3, H, W]`` (grey repeated to RGB)."""
    if frames.shape[1] == 1:
        return frames.expand(-1, 3, -1, -1)
    if frames.shape[1] != 3:
        raise ValueError(f"perceptual metrics need 1 or 3 channels, got {frames.shape[1]}")
    return frames


class FrameDistance(nn.Module):
    """A frozen full-reference distance between frames. Subclasses give ``prepare`` (from [-1, 1] to
    the network's input range), ``features`` and ``distance``; ``forward(a, b)`` is the metric itself."""

    frame_batch = 128  # frames per forward pass: bounds memory (DISTS keeps ~2 MB of features per 64×64 frame)

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        """RGB frames in [-1, 1] → the input range ``forward`` takes."""
        raise NotImplementedError

    def features(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """``[N, 3, H, W]`` in the input range → one ``[N, C_k, H_k, W_k]`` map per layer."""
        raise NotImplementedError

    def distance(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        """Two lists of feature maps ``[..., C_k, H_k, W_k]`` whose leading dims broadcast → ``[...]``."""
        raise NotImplementedError

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` frames (C = 1 or 3) → ``[N]`` distances."""
        return self.distance(self.features(rgb(a)), self.features(rgb(b)))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def video_features(self, video: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C, T, H, W]`` in [-1, 1] → per layer ``[B, T, C_k, H_k, W_k]``, on the model's device."""
        b, c, t, h, w = video.shape
        frames = video.to(self.device, torch.float32).clamp(-1, 1).transpose(1, 2).reshape(b * t, c, h, w)
        per_chunk = [self.features(self.prepare(rgb(frames[i : i + self.frame_batch])))
                     for i in range(0, b * t, self.frame_batch)]  # fmt: skip
        return [torch.cat(maps).view(b, t, *maps[0].shape[1:]) for maps in zip(*per_chunk, strict=True)]

    @torch.no_grad()
    def video_distance(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per video ``[B]``: the mean over frames of the distance between ``pred[i]`` and ``target[i]``."""
        if pred.shape != target.shape:
            raise ValueError(f"videos of different shapes: {tuple(pred.shape)} and {tuple(target.shape)}")
        step = max(1, self.frame_batch // pred.shape[2])  # videos per pass
        scores = [self.distance(self.video_features(pred[i : i + step]), self.video_features(target[i : i + step]))
                  for i in range(0, len(pred), step)]  # fmt: skip
        return torch.cat(scores).mean(dim=1).to(pred.device)  # [B, T] → [B]

    @torch.no_grad()
    def closest(self, generated: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """Per generated video ``[G]``: its smallest ``video_distance`` to any of ``references``
        ``[R, C, T, H, W]``; each reference is embedded once per group of generated videos."""
        if len(references) == 0:
            raise ValueError("no reference videos to compare with")
        step = max(1, self.frame_batch // references.shape[2])
        best = []
        for g in range(0, len(generated), step):
            probes = [f.unsqueeze(1) for f in self.video_features(generated[g : g + step])]  # [g, 1, T, ...]
            lowest = None
            for r in range(0, len(references), step):
                refs = [f.unsqueeze(0) for f in self.video_features(references[r : r + step])]  # [1, r, T, ...]
                scores = self.distance(probes, refs).mean(dim=2).amin(dim=1)  # [g, r, T] → [g]
                lowest = scores if lowest is None else torch.minimum(lowest, scores)
            best.append(lowest)
        return torch.cat(best).to(generated.device)
