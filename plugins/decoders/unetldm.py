"""unetldm: the latent-diffusion autoencoder of Rombach et al. (2022) in 3D, trained as a WAE.

The paper's UNetLDM (Section 4.1) is "adapted from Rombach et al. (2022) ... extended with 3D
convolutional and transposed operations and includes residual blocks and attention mechanisms".
This is the ``Encoder``/``Decoder`` pair of ``ldm/modules/diffusionmodules/model.py`` with every 2D
operation made 3D: residual blocks of 3×3×3 convolutions, strided-conv downsampling, a mid block with
self-attention over all T'·H'·W' positions, and a decoder that mirrors it.

At the default size (base_channels 128, channel_mult (1, 2, 4, 4), two residual blocks per level) the
2D LDM autoencoder has ~83M parameters; 3×3×3 kernels triple its convolutions: 246,963,461 parameters
with the vector latent (Table A.2: 268.8M, −8%), 259,087,621 with ``upsample = "transposed"`` (−4%).

Two latents:

- ``latent = "vector"`` (the paper's): the bottom z_channels×T'×H'×W' map is flattened and projected
  to a d_z = ``latent_dim`` vector (128 in the paper, A.3.3); the decoder projects back and reshapes.
- ``latent = "spatial"``: the bottom map itself, ``(z_channels, T', H', W')``, e.g. (4, 4, 16, 16) for
  16×64×64 clips at the defaults: what the diffusion sampler denoises in.

The output layer is linear (no tanh): ``decode`` returns unclamped values so the L1 reconstruction
loss keeps its gradient at the ends of [-1, 1]; whoever turns a decoded video into pixels clamps it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from t2vkit.errors import ConfigError, DataError
from t2vkit.interfaces import VideoAutoencoder
from t2vkit.models.objectives import WAELosses, WAEObjective, check_losses


@dataclass
class UNetLDMConfig(WAELosses):
    # the clip shape, filled from the data set: videos are [B, channels, frames, size, size]
    channels: int = 1
    frames: int = 16
    size: int = 64
    # the LDM trunk (Rombach et al.'s first-stage models use 128, (1, 2, 4, 4), 2)
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention: bool = True  # self-attention in the mid block, at the lowest resolution
    dropout: float = 0.0
    # Downsampling between consecutive levels, one flag per transition (len(channel_mult) - 1 of
    # them): the clip is divided by spatial_factor = 2**sum(spatial_downsample) in H and W and by
    # temporal_factor = 2**sum(temporal_downsample) in T. A transition that halves no axis keeps
    # its convolution (stride 1), so the parameter count does not depend on these flags.
    spatial_downsample: tuple[bool, ...] = (True, True, False)
    temporal_downsample: tuple[bool, ...] = (True, True, False)
    upsample: Literal["nearest", "transposed"] = "nearest"  # nearest + 3×3×3 conv (LDM), or ConvTranspose3d
    # the latent
    z_channels: int = 4
    latent: Literal["vector", "spatial"] = "vector"
    latent_dim: int = 128  # d_z of the vector latent (A.3.3); unused by the spatial latent

    @property
    def spatial_factor(self) -> int:
        return 2 ** sum(self.spatial_downsample)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)

    @property
    def bottom_shape(self) -> tuple[int, int, int]:
        """(T', H', W') of the lowest resolution."""
        h = self.size // self.spatial_factor
        return self.frames // self.temporal_factor, h, h

    def validate(self) -> None:
        """Raise a ConfigError for options or a clip shape this network cannot take."""
        check_losses(self)
        if self.latent not in ("vector", "spatial"):
            raise ConfigError(f"decoder.latent must be 'vector' or 'spatial', got {self.latent!r}")
        if self.upsample not in ("nearest", "transposed"):
            raise ConfigError(f"decoder.upsample must be 'nearest' or 'transposed', got {self.upsample!r}")
        positive = ("channels", "frames", "size", "base_channels", "num_res_blocks", "z_channels", "latent_dim")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"decoder.{name} must be at least 1, got {getattr(self, name)}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ConfigError(f"decoder.channel_mult must be positive integers, got {list(self.channel_mult)}")
        transitions = len(self.channel_mult) - 1
        for name in ("spatial_downsample", "temporal_downsample"):
            if len(getattr(self, name)) != transitions:
                raise ConfigError(
                    f"decoder.{name} needs one flag per transition between the {len(self.channel_mult)} levels "
                    f"of channel_mult ({transitions}), got {len(getattr(self, name))}"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"decoder.dropout must be in [0, 1), got {self.dropout}")
        if self.frames % self.temporal_factor or self.size % self.spatial_factor:
            raise ConfigError(
                f"unetldm cannot take {self.frames}-frame clips of {self.size}×{self.size}: frames must be a "
                f"multiple of {self.temporal_factor} and size of {self.spatial_factor} (its downsampling); "
                "change decoder.temporal_downsample / decoder.spatial_downsample or the clip shape"
            )


# --------------------------------------------------------------------------- building blocks


def group_norm(channels: int) -> nn.GroupNorm:
    """LDM's GroupNorm: 32 groups (fewer when ``channels`` is not a multiple of 32, as in tiny test nets)."""
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6, affine=True)


class ResnetBlock3D(nn.Module):
    """GroupNorm → SiLU → conv → GroupNorm → SiLU → dropout → conv, plus a (1×1×1 when needed) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, Cin, T, H, W] -> [B, Cout, T, H, W]
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock3D(nn.Module):
    """Single-head self-attention over all T·H·W positions (LDM's AttnBlock), with a residual.

    ``scaled_dot_product_attention`` picks a fused kernel where one exists, so the N×N score matrix is
    not materialised on GPUs (N = 1024 at the defaults' bottom, 4×16×16).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv3d(channels, 3 * channels, 1)  # LDM's q, k, v 1×1 convs, fused
        self.proj_out = nn.Conv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T, H, W] -> same
        B, C, T, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, 1, C, T * H * W).transpose(-1, -2)  # [B, 3, 1, N, C]
        q, k, v = qkv.unbind(1)  # each [B, 1 head, N, C]
        h = F.scaled_dot_product_attention(q, k, v)  # [B, 1, N, C]
        h = h.transpose(-1, -2).reshape(B, C, T, H, W)
        return x + self.proj_out(h)


class Downsample3D(nn.Module):
    """A 3×3×3 conv with stride 2 on the axes that halve, after LDM's asymmetric (0, 1) padding on them.

    ``stride`` is (t, h, w), each 1 or 2; a stride-1 axis gets ordinary (1, 1) padding, so it keeps its size.
    """

    def __init__(self, channels: int, stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.pad = tuple(p for s in reversed(stride) for p in ((0, 1) if s == 2 else (1, 1)))  # F.pad: W, H, T
        self.conv = nn.Conv3d(channels, channels, 3, stride=stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T, H, W] -> [B, C, T/st, H/sh, W/sw]
        return self.conv(F.pad(x, self.pad))


class Upsample3D(nn.Module):
    """Doubles the axes that ``scale`` marks: nearest + 3×3×3 conv (LDM), or a transposed conv.

    The transposed conv uses kernel 4 / stride 2 / padding 1 on doubled axes and kernel 3 / stride 1 /
    padding 1 on the others, so each doubled axis grows exactly ×2.
    """

    def __init__(self, channels: int, scale: tuple[int, int, int], mode: str = "nearest") -> None:
        super().__init__()
        self.scale = scale
        self.mode = mode
        if mode == "transposed":
            kernel = tuple(4 if s == 2 else 3 for s in scale)
            self.conv = nn.ConvTranspose3d(channels, channels, kernel, stride=scale, padding=1)
        else:
            self.conv = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T, H, W] -> [B, C, T*st, H*sh, W*sw]
        if self.mode != "transposed" and max(self.scale) > 1:
            x = F.interpolate(x, scale_factor=[float(s) for s in self.scale], mode="nearest")
        return self.conv(x)


def _strides(config: UNetLDMConfig) -> list[tuple[int, int, int]]:
    """(t, h, w) stride of each transition between levels."""
    return [
        (2 if t else 1, 2 if s else 1, 2 if s else 1)
        for s, t in zip(config.spatial_downsample, config.temporal_downsample, strict=True)
    ]


def _mid(channels: int, config: UNetLDMConfig) -> nn.Sequential:
    """ResBlock → self-attention (when ``config.attention``) → ResBlock, at the lowest resolution."""
    attn = AttnBlock3D(channels) if config.attention else nn.Identity()
    return nn.Sequential(
        ResnetBlock3D(channels, channels, config.dropout), attn, ResnetBlock3D(channels, channels, config.dropout)
    )


# --------------------------------------------------------------------------- encoder and decoder


class Encoder3D(nn.Module):
    """Video [B, C, T, H, W] -> bottom map [B, z_channels, T', H', W'] (LDM's Encoder, double_z off)."""

    def __init__(self, config: UNetLDMConfig) -> None:
        super().__init__()
        ch, mult = config.base_channels, config.channel_mult
        strides = _strides(config)
        self.conv_in = nn.Conv3d(config.channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = ch
        for level, m in enumerate(mult):
            stage = nn.Module()
            blocks = []
            for _ in range(config.num_res_blocks):
                blocks.append(ResnetBlock3D(block_in, ch * m, config.dropout))
                block_in = ch * m
            stage.block = nn.ModuleList(blocks)
            stage.downsample = Downsample3D(block_in, strides[level]) if level < len(mult) - 1 else nn.Identity()
            self.down.append(stage)
        self.mid = _mid(block_in, config)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv3d(block_in, config.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)  # [B, ch, T, H, W]
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            h = stage.downsample(h)  # halves the flagged axes (not after the last level)
        h = self.mid(h)  # [B, ch*mult[-1], T', H', W']
        return self.conv_out(F.silu(self.norm_out(h)))  # [B, z_channels, T', H', W']


class Decoder3D(nn.Module):
    """Bottom map [B, z_channels, T', H', W'] -> video [B, C, T, H, W], linear output (LDM's Decoder)."""

    def __init__(self, config: UNetLDMConfig) -> None:
        super().__init__()
        ch, mult = config.base_channels, config.channel_mult
        strides = _strides(config)
        block_in = ch * mult[-1]
        self.conv_in = nn.Conv3d(config.z_channels, block_in, 3, padding=1)
        self.mid = _mid(block_in, config)
        # self.up[level] mirrors encoder level `level`; it runs from the deepest level to level 0
        up = []
        for level in reversed(range(len(mult))):
            stage = nn.Module()
            blocks = []
            for _ in range(config.num_res_blocks + 1):
                blocks.append(ResnetBlock3D(block_in, ch * mult[level], config.dropout))
                block_in = ch * mult[level]
            stage.block = nn.ModuleList(blocks)
            # undoes the encoder's downsampling into this level
            stage.upsample = Upsample3D(block_in, strides[level - 1], config.upsample) if level > 0 else nn.Identity()
            up.insert(0, stage)
        self.up = nn.ModuleList(up)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv3d(block_in, config.channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))  # [B, ch*mult[-1], T', H', W']
        for stage in reversed(self.up):
            for block in stage.block:
                h = block(h)
            h = stage.upsample(h)  # doubles the axes the encoder halved (not after level 0)
        return self.conv_out(F.silu(self.norm_out(h)))  # [B, C, T, H, W], unclamped


# --------------------------------------------------------------------------- the autoencoder


class UNetLDM(nn.Module, VideoAutoencoder):
    """E_v and G of the paper's UNetLDM: a 3D LDM autoencoder with a vector or a spatial latent."""

    Config = UNetLDMConfig

    def __init__(self, config: UNetLDMConfig | None = None) -> None:
        super().__init__()
        config = config or UNetLDMConfig()
        config.validate()
        self.config = config
        self.encoder = Encoder3D(config)
        self.decoder = Decoder3D(config)
        self.bottom = (config.z_channels, *config.bottom_shape)  # (z_channels, T', H', W')
        if config.latent == "vector":
            flat = math.prod(self.bottom)
            self.to_vector = nn.Linear(flat, config.latent_dim)  # [B, z*T'*H'*W'] -> [B, d_z]
            self.from_vector = nn.Linear(config.latent_dim, flat)  # [B, d_z] -> [B, z*T'*H'*W']
        else:
            self.to_vector = self.from_vector = None

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,) if self.config.latent == "vector" else self.bottom

    @property
    def video_shape(self) -> tuple[int, int, int, int]:
        """(C, T, H, W) of the clips this autoencoder takes and makes."""
        c = self.config
        return c.channels, c.frames, c.size, c.size

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] in [-1, 1] -> [B, *latent_shape]."""
        if video.dim() != 5 or tuple(video.shape[1:]) != self.video_shape:
            raise DataError(
                f"unetldm expects videos of shape [B, {', '.join(map(str, self.video_shape))}] (B, C, T, H, W), "
                f"got {list(video.shape)}"
            )
        h = self.encoder(video)  # [B, z_channels, T', H', W']
        return h if self.to_vector is None else self.to_vector(h.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """[B, *latent_shape] -> [B, C, T, H, W], unclamped (clamp to [-1, 1] when making pixels)."""
        if z.dim() != 1 + len(self.latent_shape) or tuple(z.shape[1:]) != self.latent_shape:
            raise DataError(
                f"unetldm expects latents of shape [B, {', '.join(map(str, self.latent_shape))}], got {list(z.shape)}"
            )
        if self.from_vector is not None:
            z = self.from_vector(z).view(-1, *self.bottom)  # [B, z_channels, T', H', W']
        return self.decoder(z)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """The reconstruction G(E(x))."""
        return self.decode(self.encode(video))

    def objective(self) -> WAEObjective:
        """The paper's stage-1 WAE losses (A.2) with D_z over the flattened latent, vector or spatial."""
        return WAEObjective(self.config, self.config.channels, self.latent_shape)
