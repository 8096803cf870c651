"""wae3d: 3DConv-Base, the paper's 3D convolutional video Wasserstein autoencoder (seed 000, 4.1 and A.2).

The DCGAN guidelines (Radford et al. 2016) carried to 3D, as in VGAN (Vondrick et al. 2016): strided
convolutions instead of pooling (kernel 4, stride 2 in T, H and W), BatchNorm, LeakyReLU(0.2) in the
encoder E, ReLU in the generator G with tanh at its output, no BatchNorm on E's input stage nor on G's
output stage, no hidden fully connected layers (one linear map to and from the latent vector). No
attention and no residual blocks, as the paper says.

Skip connections ("added to improve its convergence", 4.1): generation decodes from z alone, so no
path can go from E to G (a U-Net bridge would leave G useless without the encoder). Each stage
instead carries its own shortcut around the strided convolution: a *resampled 1×1×1 projection*
(E: 2× average pooling, then a 1×1×1 conv; G: a 1×1×1 conv, then 2× nearest upsampling) added to the
convolution's output before the norm and the activation. It gives every stage a short linear path
for the gradient without making it a residual block (one convolution per stage, no identity).

At the paper size (1-channel clips of 16×64×64, d_z = 64, width 40, widths ×(1, 2, 4, 8)) E + G have
9,398,985 parameters (Table A.2: 9.9M, −5%); the width is ours, chosen to land near that size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from t2vkit.errors import ConfigError, DataError
from t2vkit.interfaces import VideoAutoencoder
from t2vkit.models.objectives import WAELosses, WAEObjective


@dataclass
class WAE3DConfig(WAELosses):
    channels: int = 1  # filled from the data set: 1 (grey) or 3 (RGB)
    frames: int = 16  # filled from the data set
    size: int = 64  # frame height = width, filled from the data set
    latent_dim: int = 64  # d_z
    width: int = 40  # channels of the first stage
    mults: tuple[int, ...] = (1, 2, 4, 8)  # stage widths = width × mult; each stage halves T, H and W


class Down(nn.Module):
    """E's stage: [B, cin, T, H, W] → [B, cout, T/2, H/2, W/2], conv(k4, s2) + pooled 1×1×1 shortcut."""

    def __init__(self, cin: int, cout: int, norm: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 4, 2, 1, bias=not norm)
        self.skip = nn.Conv3d(cin, cout, 1, bias=False)
        self.norm = nn.BatchNorm3d(cout) if norm else nn.Identity()
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x) + self.skip(F.avg_pool3d(x, 2))))


class Up(nn.Module):
    """G's stage: [B, cin, T, H, W] → [B, cout, 2T, 2H, 2W], transposed conv(k4, s2) + upsampled 1×1×1
    shortcut; the last stage has no norm and ends in tanh."""

    def __init__(self, cin: int, cout: int, last: bool = False) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose3d(cin, cout, 4, 2, 1, bias=last)
        self.skip = nn.Conv3d(cin, cout, 1, bias=False)
        self.norm = nn.Identity() if last else nn.BatchNorm3d(cout)
        self.act = nn.Tanh() if last else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # projecting before upsampling is the same as after (both linear), on 8× fewer positions
        return self.act(self.norm(self.conv(x) + F.interpolate(self.skip(x), scale_factor=2, mode="nearest")))


class WAE3D(nn.Module, VideoAutoencoder):
    """E_v: ``[B, C, T, H, W]`` in [-1, 1] → ``[B, d_z]``; G: ``[B, d_z]`` → ``[B, C, T, H, W]``."""

    Config = WAE3DConfig

    def __init__(self, config: WAE3DConfig) -> None:
        super().__init__()
        check_shape(config, type(self).__name__.lower())
        self.config = config
        widths = [config.width * m for m in config.mults]  # e.g. 40, 80, 160, 320
        factor = 2 ** len(widths)
        self.bottom = (widths[-1], config.frames // factor, config.size // factor, config.size // factor)
        flat = math.prod(self.bottom)  # paper size: 320 × 1 × 4 × 4

        # E: [B, C, T, H, W] → [B, widths[-1], T/16, H/16, W/16] → [B, d_z]
        ins = [config.channels, *widths[:-1]]
        self.encoder = nn.Sequential(
            *(Down(a, b, norm=i > 0) for i, (a, b) in enumerate(zip(ins, widths, strict=True)))
        )
        self.to_latent = nn.Linear(flat, self.head_dim())

        # G: [B, d_z] → [B, widths[-1], T/16, H/16, W/16] → [B, C, T, H, W]
        self.from_latent = nn.Linear(config.latent_dim, flat, bias=False)
        self.from_latent_norm = nn.BatchNorm3d(widths[-1])
        outs = [*widths[:-1][::-1], config.channels]
        self.decoder = nn.Sequential(
            *(Up(a, b, last=i == len(outs) - 1) for i, (a, b) in enumerate(zip(widths[::-1], outs, strict=True)))
        )

    def head_dim(self) -> int:
        """Width of E's output layer (the VAE doubles it for (mu, logvar))."""
        return self.config.latent_dim

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    def check_video(self, video: torch.Tensor) -> None:
        c = self.config
        expected = (c.channels, c.frames, c.size, c.size)
        if video.dim() != 5 or tuple(video.shape[1:]) != expected:
            raise DataError(
                f"{type(self).__name__.lower()} takes clips [B, C, T, H, W] = [B, {', '.join(map(str, expected))}], "
                f"got {list(video.shape)}"
            )

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """E up to its output layer: ``[B, C, T, H, W]`` → ``[B, head_dim]``."""
        self.check_video(video)
        return self.to_latent(self.encoder(video).flatten(1))

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Deterministic: the same clip (in eval mode) always gives the same z, ``[B, d_z]``."""
        return self.features(video)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(z).view(-1, *self.bottom)  # [B, widths[-1], T', H', W']
        h = F.relu(self.from_latent_norm(h))
        return self.decoder(h)  # [B, C, T, H, W] in [-1, 1]

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(video))

    def objective(self) -> WAEObjective:
        return WAEObjective(self.config, self.config.channels, self.latent_shape)


def check_shape(config: WAE3DConfig, name: str) -> None:
    """Refuse, with one ConfigError, a clip shape or size the network cannot take."""
    for field in ("channels", "frames", "size", "latent_dim", "width"):
        if getattr(config, field) < 1:
            raise ConfigError(f"{name}: decoder.{field} must be ≥ 1, got {getattr(config, field)}")
    if not config.mults or min(config.mults) < 1:
        raise ConfigError(f"{name}: decoder.mults needs one or more positive multipliers, got {config.mults}")
    factor = 2 ** len(config.mults)
    for field in ("frames", "size"):
        value = getattr(config, field)
        if value % factor:
            raise ConfigError(
                f"{name} cannot take clips of {config.frames} frames of {config.size}×{config.size}: "
                f"its {len(config.mults)} stages halve T, H and W, so frames and size must be multiples of "
                f"{factor} ({field} = {value}); resample the clips or use fewer stages (decoder.mults)"
            )
