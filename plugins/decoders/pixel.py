"""pixel: the identity "autoencoder", so that a sampler can work in pixel space (the paper's VDM
baseline is diffusion in pixel space). Its latent is the clip itself, ``[C, T, H, W]``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from t2vkit.errors import ConfigError
from t2vkit.interfaces import VideoAutoencoder, VideoObjective


@dataclass
class PixelConfig:
    channels: int = 1  # filled from the data set
    frames: int = 16
    size: int = 64


class PixelSpace(nn.Module, VideoAutoencoder):
    Config = PixelConfig

    def __init__(self, config: PixelConfig) -> None:
        super().__init__()
        self.config = config

    @property
    def latent_shape(self) -> tuple[int, ...]:
        c = self.config
        return (c.channels, c.frames, c.size, c.size)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return video

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def objective(self) -> VideoObjective:
        raise ConfigError("the pixel decoder is the identity: there is nothing to train in stage 1")
