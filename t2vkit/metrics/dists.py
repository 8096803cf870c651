"""DISTS (Ding et al. 2020, "Image Quality Assessment: Unifying Structure and Texture Similarity"),
computed as the authors' ``DISTS_pytorch`` computes it (seed 000, A.3.1: the official PyTorch code,
VGG16, defaults).

Frames in [0, 1] are normalised with ImageNet's statistics and run through VGG16 whose four
max-pools are replaced by L2 pooling (√ of a 3×3 Hann-weighted blur of x², stride 2). With the raw
frame as stage 0 and relu1_2 … relu5_3 as stages 1–5, per channel ``i`` of stage ``k``:

    texture   l = (2 μx μy + c1) / (μx² + μy² + c1)        μ: spatial means
    structure s = (2 σxy + c2) / (σx² + σy² + c2)          σ: spatial (co)variances, c1 = c2 = 1e-6
    DISTS(x, y) = 1 − Σ_k Σ_i (α_ki l_ki + β_ki s_ki),     α, β scaled so that Σα + Σβ = 1

Two files, both named by the user:

- the VGG16 weights: torchvision's ``vgg16-397923af.pth`` (see ``t2vkit.models.backbones``);
  ``--dists-backbone PATH`` or ``T2VKIT_DISTS_BACKBONE``;
- α and β: ``weights.pt`` of the ``DISTS_pytorch`` package (PyPI ``DISTS_pytorch``, MIT; also
  ``DISTS_pytorch/weights.pt`` in github.com/dingkeyan93/DISTS), a dict ``{"alpha", "beta"}`` of
  1475 values each (3 + 64 + 128 + 256 + 512 + 512 channels); ``--dists-weights PATH`` or
  ``T2VKIT_DISTS_WEIGHTS``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from t2vkit.metrics.frame_distance import FrameDistance
from t2vkit.models.backbones import VGG16_URL, vgg16
from t2vkit.models.weight_files import WeightFile, resolve_pair

CHANNELS = (3, 64, 128, 256, 512, 512)  # the frame itself, then relu1_2 … relu5_3
C1 = C2 = 1e-6
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BACKBONE = WeightFile("VGG16 weights", "--dists-backbone", "T2VKIT_DISTS_BACKBONE",
                      f"torchvision's VGG16 ({VGG16_URL}, SHA-256 starting 397923af)")  # fmt: skip
WEIGHTS = WeightFile("DISTS weights", "--dists-weights", "T2VKIT_DISTS_WEIGHTS",
                     "DISTS' alpha/beta (weights.pt of DISTS_pytorch, github.com/dingkeyan93/DISTS)")  # fmt: skip


class L2Pool(nn.Module):
    """DISTS' anti-aliased replacement for max-pooling: √(blur(x²) + 1e-12), a 3×3 Hann window
    (the inner taps of a 5-tap one), stride 2, padding 1, per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = torch.hann_window(5, periodic=False, dtype=torch.float64)[1:-1]  # [0.5, 1, 0.5]
        g = (a[:, None] * a[None, :]).float()
        self.register_buffer("filter", (g / g.sum()).expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (F.conv2d(x.pow(2), self.filter, stride=2, padding=1, groups=x.shape[1]) + 1e-12).sqrt()


class DISTS(FrameDistance):
    """DISTS (VGG16); ``forward(x, y)``: frames ``[N, C, H, W]`` in [0, 1] → ``[N]``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = vgg16(pool=L2Pool)
        self.register_buffer("alpha", torch.full((sum(CHANNELS),), 0.1))  # set by load_dists
        self.register_buffer("beta", torch.full((sum(CHANNELS),), 0.1))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        return (frames + 1) / 2  # DISTS takes [0, 1]

    def features(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """The six stages: the frame itself (not normalised), then the five VGG16 stages."""
        return [frames, *self.net((frames - self.mean) / self.std)]

    def distance(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, CHANNELS)
        betas = torch.split(self.beta / total, CHANNELS)
        texture = structure = 0
        for x, y, alpha, beta in zip(fx, fy, alphas, betas, strict=True):
            mx, my = x.mean(dim=(-2, -1)), y.mean(dim=(-2, -1))  # [..., C]
            vx = (x - mx[..., None, None]).pow(2).mean(dim=(-2, -1))
            vy = (y - my[..., None, None]).pow(2).mean(dim=(-2, -1))
            # E[xy] without materialising x·y when x and y broadcast (one probe against many references)
            cov = torch.einsum("...chw,...chw->...c", x, y) / (x.shape[-2] * x.shape[-1]) - mx * my
            texture = texture + (alpha * (2 * mx * my + C1) / (mx.pow(2) + my.pow(2) + C1)).sum(dim=-1)
            structure = structure + (beta * (2 * cov + C2) / (vx + vy + C2)).sum(dim=-1)
        return 1 - (texture + structure)


def load_dists(backbone: str | Path, weights: str | Path) -> DISTS:
    """DISTS from the VGG16 file (torchvision's layout, ``.pth`` or ``.safetensors``) and DISTS'
    ``weights.pt``; a missing, unreadable or mis-shaped file is one ``CheckpointError`` line."""
    model = DISTS()
    model.net.load_torchvision(backbone, BACKBONE)
    weights = Path(weights)
    state = WEIGHTS.read(weights)
    for name in ("alpha", "beta"):  # stored as [1, 1475, 1, 1]
        value = WEIGHTS.tensor(state, name, (1, sum(CHANNELS), 1, 1), weights)
        getattr(model, name).copy_(value.flatten())
    return model


def resolve_dists(backbone: str | Path | None = None,
                  weights: str | Path | None = None) -> tuple[tuple[Path, Path] | None, str]:  # fmt: skip
    """``((backbone, weights), "")`` from the arguments or ``T2VKIT_DISTS_BACKBONE`` / ``T2VKIT_DISTS_WEIGHTS``,
    or ``(None, why)`` when a file is not named or not there."""
    return resolve_pair(BACKBONE, backbone, WEIGHTS, weights)


def dists_video(model: DISTS, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DISTS per video ``[B]`` of ``[B, C, T, H, W]`` videos in [-1, 1]: the mean over its frames."""
    return model.video_distance(pred, target)
