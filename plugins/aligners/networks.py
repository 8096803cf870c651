"""What the stage-2 aligners share (seed 000, Section 3 and A.3.3): the base MLP, the configs, and
the progressive architecture with the cost of Eq. 2.

Every aligner with a shared space has the same three networks and the same generation path:

    M:   z_t [B, d_t]  → shared code [B, d_zs]        (the mapping function)
    E_s: z_v [B, d_zv] → shared code [B, d_zs]        (the video shared autoencoder's encoder)
    G_s: shared code   → z_v [B, d_zv]                (its decoder; generation is G_s(M(z_t)))

with d_zv = prod(latent_shape): a stage-1 latent of any shape (vector or spatial) is flattened on
the way in and unflattened on the way out. They differ only in the divergence of Eq. 1 (the
alignment term), which each objective's :meth:`SharedSpaceObjective.divergence` provides.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
import torch.nn as nn

from t2vkit.errors import ConfigError
from t2vkit.interfaces import AlignBatch, Aligner, AlignObjective
from t2vkit.models.alignment import decoupling_cost

CLIP_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature 0.07, as a log scale


class MLP(nn.Sequential):
    """The base network of A.3.3: four Linear layers; each of the first three is followed by
    LayerNorm and Swish (SiLU); Dropout after the second and third; the last Linear is plain.

    ``[B, in_dim] → [B, out_dim]``. At hidden 512 it has 823,872 parameters as M (512 → 64; Table A.2:
    824k) and 594,496 as E_s or G_s (64 → 64; E_s + G_s 1,188,992, Table A.2: 1.2M).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512, dropout: float = 0.1) -> None:
        layers: list[nn.Module] = []
        dim = in_dim
        for i in range(3):
            layers += [nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.SiLU()]
            if i > 0:  # after the second and the third layer
                layers.append(nn.Dropout(dropout))
            dim = hidden
        layers.append(nn.Linear(hidden, out_dim))
        super().__init__(*layers)


class LogitScale(nn.Module):
    """CLIP's temperature as a learnable log scale: ``forward() = exp(log_scale)``, clamped at ``max_scale``
    (CLIP: init ln(1/0.07), at most 100). A fixed scale (``learn=False``) is a buffer, not a parameter."""

    def __init__(self, init: float = CLIP_LOGIT_SCALE, max_scale: float = 100.0, learn: bool = True) -> None:
        super().__init__()
        self.max_scale = max_scale
        value = torch.tensor(float(init))
        if learn:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.max_scale)


# --------------------------------------------------------------------------- configs


@dataclass
class AlignerConfig:
    """Fields every aligner has. Defaults are the paper's (A.3.3)."""

    text_dim: int = 512  # d_t, filled by t2vkit from the text encoder (CLIP ViT-B/32: 512, minilm: 384)
    latent_shape: tuple[int, ...] = (64,)  # filled by t2vkit from the stage-1 run
    hidden: int = 512  # width of the base MLPs
    dropout: float = 0.1
    noise_word_p: float = 0.15  # read by the engine: the chance that text_aug carries a noise word
    lambda_zs: float = 5.0  # λ_zs, weight of the divergence (the alignment terms)
    lambda_feat: float = 10.0  # λ_feat, the video-latent terms of Eq. 2
    lambda_pixel: float = 30.0  # λ_pixel (λ^s_pixel in A.3.3), the pixel terms of Eq. 2


@dataclass
class SharedConfig(AlignerConfig):
    """An aligner with a shared space (all but ``direct``)."""

    shared_dim: int = 64  # d_zs
    lambda_s: float = 100.0  # λ_s, the shared-code term of Eq. 2


def check_config(config: AlignerConfig, name: str) -> None:
    """Refuse sizes and weights no run could use, with one ConfigError naming the field."""
    if config.text_dim < 1:
        raise ConfigError(f"{name}: aligner.text_dim must be ≥ 1, got {config.text_dim}")
    if not config.latent_shape or min(config.latent_shape) < 1:
        raise ConfigError(f"{name}: aligner.latent_shape needs positive sizes, got {config.latent_shape}")
    for field in ("hidden", "shared_dim"):
        if getattr(config, field, 1) < 1:
            raise ConfigError(f"{name}: aligner.{field} must be ≥ 1, got {getattr(config, field)}")
    if not 0 <= config.dropout < 1:
        raise ConfigError(f"{name}: aligner.dropout must be in [0, 1), got {config.dropout}")
    if not 0 <= config.noise_word_p <= 1:
        raise ConfigError(f"{name}: aligner.noise_word_p must be in [0, 1], got {config.noise_word_p}")
    for f in fields(config):
        if f.name.startswith("lambda_") and getattr(config, f.name) < 0:
            raise ConfigError(f"{name}: aligner.{f.name} must be ≥ 0, got {getattr(config, f.name)}")


def latent_size(latent_shape: tuple[int, ...]) -> int:
    """d_zv: the size of a flattened stage-1 latent."""
    return math.prod(latent_shape)


# --------------------------------------------------------------------------- the progressive architecture


class SharedSpaceAligner(nn.Module, Aligner):
    """M, E_s and G_s (module docstring). ``projection = True`` makes M and E_s single Linear
    layers (ImageBind's projection heads) instead of the base MLP; G_s is always the MLP."""

    Config: ClassVar[type] = SharedConfig
    projection: ClassVar[bool] = False

    def __init__(self, config: SharedConfig) -> None:
        super().__init__()
        check_config(config, type(self).__name__)
        self.config = config
        self.latent_shape = tuple(config.latent_shape)
        d_t, d_zs, d_zv = config.text_dim, config.shared_dim, latent_size(self.latent_shape)
        h, p = config.hidden, config.dropout
        if self.projection:
            self.mapping: nn.Module = nn.Linear(d_t, d_zs)  # M
            self.shared_encoder: nn.Module = nn.Linear(d_zv, d_zs)  # E_s
        else:
            self.mapping = MLP(d_t, d_zs, h, p)
            self.shared_encoder = MLP(d_zv, d_zs, h, p)
        self.shared_decoder = MLP(d_zs, d_zv, h, p)  # G_s

    def text_to_shared(self, text: torch.Tensor) -> torch.Tensor:
        return self.mapping(text)  # [B, d_t] → [B, d_zs]

    def latent_to_shared(self, latent: torch.Tensor) -> torch.Tensor:
        return self.shared_encoder(latent.flatten(1))  # [B, *latent_shape] → [B, d_zs]

    def shared_to_latent(self, shared: torch.Tensor) -> torch.Tensor:
        return self.shared_decoder(shared).unflatten(1, self.latent_shape)  # [B, d_zs] → [B, *latent_shape]

    def text_to_latent(self, text: torch.Tensor) -> torch.Tensor:
        """The generation path G_s(M(z_t)): ``[B, d_t] → [B, *latent_shape]``."""
        return self.shared_to_latent(self.text_to_shared(text))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.text_to_latent(text)


class SharedSpaceObjective(AlignObjective):
    """Eq. 1 for an aligner with a shared space: the cost of Eq. 2 plus λ_zs times a divergence.

    :meth:`forward` runs the aligner's networks once per step::

        z1 = E_s(z_v)      [B, d_zs]  the clip's shared code ("real", z1 ~ p*(z))
        z2 = M(t̂)          [B, d_zs]  the augmented caption's shared code ("generated", z2 ~ q(z|z_t))
        zt = M(t)          [B, d_zs]  the clean caption's (the alignment terms use it, A.3.3)
        y1, y2 = G_s(z1), G_s(z2)     [B, *latent_shape]

    :meth:`aligner_loss` is :func:`~t2vkit.models.alignment.decoupling_cost` plus the subclass's
    :meth:`divergence` terms, each multiplied by λ_zs (skipped when λ_zs = 0).
    """

    def __init__(self, aligner: SharedSpaceAligner) -> None:
        self.aligner = aligner
        self.config = aligner.config

    def forward(self, aligner: Aligner, batch: AlignBatch) -> dict[str, torch.Tensor]:
        assert isinstance(aligner, SharedSpaceAligner)
        z1 = aligner.latent_to_shared(batch.latent)
        z2 = aligner.text_to_shared(batch.text_aug)
        zt = aligner.text_to_shared(batch.text)
        return {"z1": z1, "z2": z2, "zt": zt, "y1": aligner.shared_to_latent(z1), "y2": aligner.shared_to_latent(z2)}

    def aligner_loss(self, batch: AlignBatch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        terms = decoupling_cost(out["z1"], out["z2"], out["y1"], out["y2"], batch.latent, batch.video, batch.decode,
                                c.lambda_s, c.lambda_feat, c.lambda_pixel)  # fmt: skip
        if c.lambda_zs > 0:
            terms |= {name: c.lambda_zs * value for name, value in self.divergence(batch, out).items()}
        return terms

    @abstractmethod
    def divergence(self, batch: AlignBatch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The alignment terms (Eq. 3 for the paper's method), before λ_zs."""


__all__ = [
    "CLIP_LOGIT_SCALE",
    "MLP",
    "AlignerConfig",
    "LogitScale",
    "SharedConfig",
    "SharedSpaceAligner",
    "SharedSpaceObjective",
    "check_config",
    "latent_size",
]
