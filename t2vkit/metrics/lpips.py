"""LPIPS v0.1 with AlexNet (Zhang et al. 2018), computed as the ``lpips`` package's
``LPIPS(net='alex', version='0.1')`` computes it (seed 000, A.3.1: the official code, AlexNet, defaults):

    d(a, b) = Σ_l mean_hw Σ_c w_lc (â_lc − b̂_lc)²,   â_l = a_l / (‖a_l‖₂ over channels + 1e-10)

where ``a_l`` are the five ReLU outputs of AlexNet on ``(a − shift) / scale`` (inputs in [-1, 1]) and
``w_l`` the learned 1×1 heads. Two files, both named by the user:

- the AlexNet weights: torchvision's ``alexnet-owt-7be5be79.pth`` (see ``t2vkit.models.backbones``);
  ``--lpips-backbone PATH`` or ``T2VKIT_LPIPS_BACKBONE``;
- the v0.1 heads: ``lpips/weights/v0.1/alex.pth`` inside the ``lpips`` package (0.1.4 on PyPI,
  BSD-2-Clause; ``pip download lpips==0.1.4 --no-deps`` and unzip); ``--lpips-heads PATH`` or
  ``T2VKIT_LPIPS_HEADS``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from t2vkit.metrics.frame_distance import FrameDistance
from t2vkit.models.backbones import ALEXNET_URL, alexnet
from t2vkit.models.weight_files import WeightFile, resolve_pair

CHANNELS = (64, 192, 384, 256, 256)  # AlexNet relu1 … relu5
SHIFT = (-0.030, -0.088, -0.188)  # lpips' ScalingLayer: ImageNet statistics in [-1, 1] units
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10

BACKBONE = WeightFile("AlexNet weights", "--lpips-backbone", "T2VKIT_LPIPS_BACKBONE",
                      f"torchvision's AlexNet ({ALEXNET_URL}, SHA-256 starting 7be5be79)")  # fmt: skip
HEADS = WeightFile("LPIPS heads", "--lpips-heads", "T2VKIT_LPIPS_HEADS",
                   "the LPIPS v0.1 AlexNet heads (lpips/weights/v0.1/alex.pth in the lpips 0.1.4 package)")  # fmt: skip


class LPIPS(FrameDistance):
    """LPIPS v0.1 (AlexNet); ``forward(a, b)``: frames ``[N, C, H, W]`` in [-1, 1] → ``[N]``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = alexnet()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        return frames  # LPIPS takes [-1, 1]

    def features(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """The five AlexNet activations, each unit-normalised over channels."""
        acts = self.net((frames - self.shift) / self.scale)
        return [f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS) for f in acts]

    def distance(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        layers = []
        for head, a, b in zip(self.heads, fa, fb, strict=True):
            diff = (a - b).pow(2)  # [..., C, h, w]
            per_frame = head(diff.reshape(-1, *diff.shape[-3:])).mean(dim=(1, 2, 3))  # 1×1 head, spatial mean
            layers.append(per_frame.view(diff.shape[:-3]))
        return sum(layers)  # in lpips' order: relu1 + relu2 + …


def load_lpips(backbone: str | Path, heads: str | Path) -> LPIPS:
    """LPIPS from the AlexNet file (torchvision's layout, ``.pth`` or ``.safetensors``) and the v0.1
    heads file; a missing, unreadable or mis-shaped file is one ``CheckpointError`` line."""
    model = LPIPS()
    model.net.load_torchvision(backbone, BACKBONE)
    heads = Path(heads)
    state = HEADS.read(heads)
    for i, (head, c) in enumerate(zip(model.heads, CHANNELS, strict=True)):
        head.weight.copy_(HEADS.tensor(state, f"lin{i}.model.1.weight", (1, c, 1, 1), heads))
    return model


def resolve_lpips(backbone: str | Path | None = None,
                  heads: str | Path | None = None) -> tuple[tuple[Path, Path] | None, str]:  # fmt: skip
    """``((backbone, heads), "")`` from the arguments or ``T2VKIT_LPIPS_BACKBONE`` / ``T2VKIT_LPIPS_HEADS``,
    or ``(None, why)`` when a file is not named or not there."""
    return resolve_pair(BACKBONE, backbone, HEADS, heads)


def lpips_video(model: LPIPS, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """LPIPS per video ``[B]`` of ``[B, C, T, H, W]`` videos in [-1, 1]: the mean over its frames."""
    return model.video_distance(pred, target)
