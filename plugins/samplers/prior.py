"""The prior sampler: diffusion over a stage-1 run's latent *vector* (DALL·E 2's prior, Ramesh et al.
2022, moved to the video latent), decoded by the run's G.

Why it is here: an aligner maps a caption to one latent, so a caption with many videos (a bucket)
collapses to their mean, the paper's open problem. The diffusion sampler answers it in a spatial
latent or in pixels, which needs a GPU to train. A vector latent such as wae3d's (d_z = 64, pushed
towards N(0, I) by D_z) is small enough for a residual MLP to learn p(z_v | text) on a CPU in minutes,
and every draw decodes to a different clip of the bucket.

The network (:class:`PriorNet`) is a pure ``(x_t [B, d_z], t [B], tokens [B, L, d], mask [B, L]) ->
prediction [B, d_z]``, like the UNet, so DDIM, classifier-free guidance, training, the ONNX export
and the TensorRT engine all come from the diffusion sampler unchanged. Each residual block reads the
timestep through adaptive LayerNorm (scale and shift, as DiT's adaLN) and the caption through
cross-attention from the latent to the text token states. MG sampling smooths a video's frames; a
latent vector has none, so this sampler refuses ``--mg-alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from t2vkit.errors import ConfigError

from .diffusion import Denoiser, DiffusionSampler, NoiseSchedule, SamplingConfig
from .unet3d import attention, sinusoidal_embedding, zero_init


@dataclass
class PriorConfig(NoiseSchedule):
    latent_dim: int = 64  # d_z, filled by the training stage from the stage-1 run
    text_dim: int = 384  # d of the text token states, filled from the encoder
    max_text_len: int = 77  # the empty caption's stored length
    hidden: int = 384
    depth: int = 4  # residual blocks
    heads: int = 4  # of the cross-attention; must divide hidden
    dropout: float = 0.0

    def validate(self, section: str = "denoiser") -> None:
        for name in ("latent_dim", "text_dim", "max_text_len", "hidden", "depth", "heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{section}.{name} must be at least 1, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ConfigError(f"{section}.heads = {self.heads} does not divide hidden = {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{section}.dropout must be in [0, 1), got {self.dropout}")
        self.validate_schedule(section)


class PriorBlock(nn.Module):
    """h ← h + cross-attention(h → text);  h ← h + gate·MLP(LN(h)·(1 + scale) + shift), with (scale,
    shift, gate) from the timestep embedding; both branches start at zero."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(hidden)
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.attn_out = zero_init(nn.Linear(hidden, hidden))
        self.mlp_norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.modulation = zero_init(nn.Linear(hidden, 3 * hidden))
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(4 * hidden, hidden))  # fmt: skip

    def forward(self, h: torch.Tensor, emb: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # h [B, D], emb [B, D], text [B, L, D], mask [B, L]
        k, v = self.kv(text).chunk(2, dim=-1)
        read, _ = attention(self.q(self.attn_norm(h))[:, None], k, v, self.heads, mask)  # [B, 1, D]
        h = h + self.attn_out(read[:, 0])
        scale, shift, gate = self.modulation(emb).chunk(3, dim=-1)
        return h + gate * self.mlp(self.mlp_norm(h) * (1 + scale) + shift)


class PriorNet(nn.Module):
    """ε- or v-prediction for a noised latent vector: ``[B, d_z]`` → ``[B, d_z]``."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        d = config.hidden
        self.hidden = d
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.text_in = nn.Sequential(nn.LayerNorm(config.text_dim), nn.Linear(config.text_dim, d))
        self.x_in = nn.Linear(config.latent_dim, d)
        self.blocks = nn.ModuleList(PriorBlock(d, config.heads, config.dropout) for _ in range(config.depth))
        self.out_norm = nn.LayerNorm(d)
        self.out = zero_init(nn.Linear(d, config.latent_dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(sinusoidal_embedding(t, self.hidden).to(x_t.dtype))  # [B, D]
        text = self.text_in(tokens.to(x_t.dtype))  # [B, L, D]
        h = self.x_in(x_t) + emb
        for block in self.blocks:
            h = block(h, emb, text, mask.bool())
        return self.out(self.out_norm(h))


class PriorModel(Denoiser):
    Config = PriorConfig

    def __init__(self, config: PriorConfig) -> None:
        config.validate()
        super().__init__(config)
        self.unet = PriorNet(config)  # named as the diffusion sampler's network: one export path for both

    @classmethod
    def shape_fields(cls, latent_shape: tuple[int, ...], source: str) -> dict[str, int]:
        if len(latent_shape) != 1:
            raise ConfigError(f"{source} has a spatial latent {tuple(latent_shape)}; the prior denoises latent "
                              "vectors (a stage-1 run of wae3d, vae or unetldm with its default vector latent); "
                              "use --sampler diffusion for spatial latents and pixel space")  # fmt: skip
        return {"latent_dim": latent_shape[0]}

    @property
    def latent_shape(self) -> tuple[int]:
        return (self.config.latent_dim,)


@dataclass
class PriorSamplingConfig(SamplingConfig):
    mg_alpha: float = 0.0  # MG sampling acts on frames; a latent vector has none


class PriorSampler(DiffusionSampler):
    """DDIM + classifier-free guidance over the stage-1 latent vector with a :class:`PriorModel`."""

    Config = PriorSamplingConfig
    Model = PriorModel

    def __init__(self, config: SamplingConfig, model: PriorModel) -> None:
        super().__init__(config, model)  # the diffusion sampler's checks of steps, cfg and eta
        if config.mg_alpha != 0:
            raise ConfigError("--mg-alpha: MG sampling smooths a video's frames, and the prior draws a latent "
                              "vector with no frames; leave it out")  # fmt: skip
