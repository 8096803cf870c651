"""The semantic probe's network: a small 3D-conv video classifier with one linear head per task.

It only has to tell what a clip of the data set shows (which digit, which way it moves, which person
and action), not to draw anything, so it is built to be cheap on a CPU: every other frame, a 4×4
patch embedding, two convolutions within each frame (what is there), one across frames (how it
moves), then global average *and* max pooling: the mean carries motion over the whole clip, the max
a small object wherever it is on the canvas. Frames are dropped rather than averaged, because an
average of two frames smears a moving object. BatchNorm: it trains several times faster here than
GroupNorm; the probe is only ever used in eval mode, on its running statistics.
About 0.14M parameters at the default width.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn


def _block(c_in: int, c_out: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> nn.Sequential:
    """conv → BatchNorm → SiLU; odd kernels are padded to keep the size (before the stride)."""
    padding = tuple(k // 2 if k % 2 else 0 for k in kernel)
    conv = nn.Conv3d(c_in, c_out, kernel, stride, padding, bias=False)
    return nn.Sequential(conv, nn.BatchNorm3d(c_out), nn.SiLU())


class ProbeNet(nn.Module):
    """``[B, C, T, H, W]`` in [-1, 1] → ``{task: logits [B, classes]}``.

    Shapes below for a 16×64×64 clip at ``width`` w = 16, ``patch`` 4 and ``frame_stride`` 2. Any clip
    size works (the pooling at the end is global), but a probe only means something on clips shaped
    like the ones it was trained on.
    """

    def __init__(self, channels: int, heads: Mapping[str, int], width: int = 16, patch: int = 4,
                 frame_stride: int = 2) -> None:  # fmt: skip
        super().__init__()
        self.frame_stride = frame_stride
        w = width
        self.features = nn.Sequential(
            _block(channels, w, (1, patch, patch), (1, patch, patch)),  # [B, C, 8, 64, 64] → [B, w, 8, 16, 16]
            _block(w, 2 * w, (1, 3, 3), (1, 1, 1)),  # → [B, 2w, 8, 16, 16]
            _block(2 * w, 4 * w, (1, 3, 3), (1, 2, 2)),  # → [B, 4w, 8, 8, 8]
            _block(4 * w, 4 * w, (3, 3, 3), (2, 2, 2)),  # → [B, 4w, 4, 4, 4]
        )
        self.heads = nn.ModuleDict({task: nn.Linear(8 * w, classes) for task, classes in heads.items()})

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        x = video[:, :, :: self.frame_stride]  # [B, C, 16, 64, 64] → [B, C, 8, 64, 64]
        x = self.features(x).flatten(2)  # [B, 4w, 4*4*4]
        x = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)  # [B, 8w]
        return {task: head(x) for task, head in self.heads.items()}  # {task: [B, classes]}
