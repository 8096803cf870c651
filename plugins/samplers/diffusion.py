"""The diffusion sampler: a text-conditioned space-time UNet (``unet3d``) drawn with DDIM, classifier-free
guidance and HARIVO's mitigating-gradient (MG) sampling; its ``Model`` and training objective.

Schedules come from ``diffusers``: training noises with ``DDPMScheduler.add_noise`` (and
``get_velocity`` for v-prediction), sampling steps with ``DDIMScheduler.step``, both built from the
model config's betas (HARIVO App. D: linear, 0.00085 → 0.012, 1000 steps).

Sampling (:func:`ddim_sample`) works in ε-space whatever the model predicts: :func:`guided_epsilon`
turns one UNet into a ``denoise(x_t, t) -> ε`` callable — both halves of classifier-free guidance in
one batched call, a v prediction converted with the formula ``DDIMScheduler.step`` uses — and MG
sampling (Algorithm 1) then corrects that ε before the DDIM step. CFG commutes with the v→ε
conversion (both are affine with weights summing to one), so the order does not matter. The export
issue can hand :func:`guided_epsilon` any ``unet(x_t, t, tokens, mask)`` (ONNX Runtime, TensorRT)
without touching the loop.

DDIM uses "trailing" timestep spacing (999, 959, ..., 39 for 25 steps: the first step starts from
pure noise, Lin et al. 2024) and ᾱ = 1 after the last step, so the loop ends on the predicted x_0.
The initial noise is ``torch.randn(shape, generator=torch.Generator().manual_seed(seed))`` on the CPU,
so a seed gives the same videos on every device.

Training (:class:`DiffusionObjective`): the ε- or v-MSE at uniformly drawn timesteps, with caption
dropout for classifier-free guidance, plus HARIVO's λ_TRS·L_TRS (Eq. 3) and λ_DC·L_DC (Eq. 4) when
their weights are positive. HARIVO's L_reg (Eq. 2) is not here: it ties the video model to a frozen
text-to-image model, and this UNet is trained from scratch, spatial layers included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from t2vkit.config import from_dict
from t2vkit.errors import ConfigError
from t2vkit.interfaces import DenoiserBatch, DenoiserObjective, Sampler, TextEmbedding

from .unet3d import UNet3D, UNetConfig

if TYPE_CHECKING:  # diffusers is imported where a scheduler is built: listing plugins stays fast
    from diffusers import DDIMScheduler

#: one UNet evaluation, ``(x_t [B, C, T, H, W], t [B], tokens [B, L, d], mask [B, L]) -> prediction``
UNetFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: the guided noise estimate for a batch of videos at one timestep, ``(x_t, t) -> ε``
Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

DC_POOL = 4  # the DC projection head pools h to 4×4 (App. A flattens all of h, tying it to one size)


@dataclass
class NoiseSchedule:
    """What every denoiser shares: its noise schedule, the latent scale and the caption dropout."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085  # HARIVO App. D
    beta_end: float = 0.012
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    caption_dropout: float = 0.1  # probability of training on the empty caption (classifier-free guidance)
    latent_scale: float = 1.0  # the stage multiplies stage-1 latents by it (unit std); sampling divides it out

    def validate_schedule(self, section: str) -> None:
        if self.num_train_timesteps < 1:
            raise ConfigError(f"{section}.num_train_timesteps must be at least 1, got {self.num_train_timesteps}")
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ConfigError(f"{section}: need 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}")
        if self.beta_schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
            raise ConfigError(f"{section}.beta_schedule must be linear, scaled_linear or squaredcos_cap_v2, "
                              f"got {self.beta_schedule!r}")  # fmt: skip
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ConfigError(
                f"{section}.prediction_type must be epsilon or v_prediction, got {self.prediction_type!r}"
            )
        if not 0.0 <= self.caption_dropout <= 1.0:
            raise ConfigError(f"{section}.caption_dropout must be in [0, 1], got {self.caption_dropout}")
        if not self.latent_scale > 0:
            raise ConfigError(f"{section}.latent_scale must be > 0, got {self.latent_scale}")


@dataclass
class DenoiserConfig(UNetConfig, NoiseSchedule):
    """The UNet's fields, the schedule, the latent it works in and HARIVO's training losses."""

    size: int = 16  # H = W of the latent (or clip); channels, frames and size are filled by the training stage
    lambda_trs: float = 0.0  # temporal regularised self-attention loss, Eq. 3 (HARIVO uses 0.1)
    lambda_dc: float = 0.0  # decoupled contrastive loss on h, Eq. 4 (HARIVO uses 0.1)
    dc_tau: float = 0.1  # τ of Eq. 4
    dc_queue: int = 256  # negatives kept from earlier steps

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        return (self.channels, self.frames, self.size, self.size)

    def unet_config(self) -> UNetConfig:
        return UNetConfig(**{f.name: getattr(self, f.name) for f in fields(UNetConfig)})

    def validate(self, section: str = "denoiser") -> None:
        super().validate(section)
        self.validate_schedule(section)
        if self.size < 1 or self.size % self.spatial_factor:
            raise ConfigError(f"{section}: a {self.size}×{self.size} latent does not halve {self.levels - 1} times; "
                              f"size must be a multiple of {self.spatial_factor} (shorten channel_mult)")  # fmt: skip
        for name in ("lambda_trs", "lambda_dc"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{section}.{name} must be ≥ 0, got {getattr(self, name)}")
        if (self.lambda_trs > 0 or self.lambda_dc > 0) and self.frames < 2:
            raise ConfigError(f"{section}: the TRS and DC losses compare frames; they need frames ≥ 2")
        if self.lambda_trs > 0 and not self.attention_levels:
            raise ConfigError(f"{section}.lambda_trs > 0 needs spatial self-attention (attention_levels is empty)")
        if self.dc_tau <= 0 or self.dc_queue < 1:
            raise ConfigError(f"{section}: dc_tau must be > 0 and dc_queue ≥ 1, got {self.dc_tau}, {self.dc_queue}")


# --------------------------------------------------------------------------- text helpers


def pad_text(tokens: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``tokens [B, L, d]`` and ``mask [B, L]`` to ``length`` positions (masked out)."""
    extra = length - tokens.shape[1]
    if extra <= 0:
        return tokens, mask.bool()
    tokens = torch.cat([tokens, tokens.new_zeros(tokens.shape[0], extra, tokens.shape[2])], dim=1)
    mask = torch.cat([mask.bool(), mask.new_zeros(mask.shape[0], extra, dtype=torch.bool)], dim=1)
    return tokens, mask


def drop_captions(tokens: torch.Tensor, mask: torch.Tensor, null_tokens: torch.Tensor, null_mask: torch.Tensor,
                  drop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Replace the captions where ``drop [B]`` is True by the empty caption ``[1, L0, d]``, padding both
    to the longer of the two (the classifier-free guidance training of Ho & Salimans 2022)."""
    length = max(tokens.shape[1], null_tokens.shape[1])
    tokens, mask = pad_text(tokens, mask, length)
    null_tokens, null_mask = pad_text(null_tokens.to(tokens.dtype), null_mask, length)
    tokens = torch.where(drop[:, None, None], null_tokens.expand_as(tokens), tokens)
    mask = torch.where(drop[:, None], null_mask.expand_as(mask), mask)
    return tokens, mask


# --------------------------------------------------------------------------- the Model


class ProjectionHead(nn.Module):
    """g_θ of §3.4 (App. A): h → z, an MLP with SiLU between linear layers (c·4·4) → c → c → c.

    App. A flattens all of h (a convolution as large as h), which ties the head to one latent size and
    grows with it (16M parameters for 16×16×256); h is average-pooled to 4×4 first instead (exactly
    App. A's head when h is 4×4, as for a 16×16 latent with three levels).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.AdaptiveAvgPool2d(DC_POOL),
            nn.Flatten(),
            nn.Linear(channels * DC_POOL * DC_POOL, channels),
            nn.SiLU(),
            nn.Linear(channels, channels),
            nn.SiLU(),
            nn.Linear(channels, channels),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # [N, C, h, w] -> [N, C]
        return self.layers(h)


class Denoiser(nn.Module):
    """What the ``diffusion`` stage trains and a diffusion sampler draws with, whatever the network.

    ``self.unet`` is the network, a pure function ``(x_t, t, tokens, mask) -> prediction`` (what the
    export traces); calling the model is calling it. The model also keeps the empty caption's token
    states (``null_tokens [1, max_text_len, d]`` and ``null_mask``, set by the training stage with
    :meth:`set_null_text`, saved with the weights so generation needs no text-encoder call for them)
    and builds the schedulers from its config (a :class:`NoiseSchedule` with ``text_dim`` and
    ``max_text_len``). Subclasses set ``unet`` and say which stage-1 latents they take.
    """

    unet: nn.Module

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("null_tokens", torch.zeros(1, config.max_text_len, config.text_dim))
        self.register_buffer("null_mask", torch.zeros(1, config.max_text_len, dtype=torch.bool))

    @classmethod
    def shape_fields(cls, latent_shape: tuple[int, ...], source: str) -> dict[str, int]:
        """The config fields the training stage fixes from the stage-1 latent's shape (``source`` names
        where it comes from); a ConfigError for a latent this network cannot denoise."""
        raise NotImplementedError

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The shape of one sample the model denoises (the scaled stage-1 latent, or the clip)."""
        raise NotImplementedError

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t, tokens, mask)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
        """The prediction and the network's own weighted training terms (none here)."""
        return self.unet(x_t, t, tokens, mask), {}

    @torch.no_grad()
    def set_null_text(self, tokens: torch.Tensor, mask: torch.Tensor) -> None:
        """Store the empty caption's token states ``[1, L0, d]`` and mask ``[1, L0]`` (L0 ≤ max_text_len)."""
        tokens, mask = tokens.reshape(1, -1, tokens.shape[-1]), mask.reshape(1, -1)
        length, dim = tokens.shape[1], tokens.shape[2]
        if dim != self.config.text_dim or length > self.config.max_text_len or mask.shape[1] != length:
            raise ConfigError(f"the empty caption's tokens {tuple(tokens.shape)} (mask {tuple(mask.shape)}) do not "
                              f"fit [1, ≤{self.config.max_text_len}, {self.config.text_dim}]")  # fmt: skip
        self.null_tokens.zero_()
        self.null_mask.zero_()
        self.null_tokens[:, :length] = tokens.to(self.null_tokens)
        self.null_mask[:, :length] = mask.bool().to(self.null_mask.device)

    def null_text(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The empty caption, trimmed after its last real token: ``[1, L0, d]``, ``[1, L0]``."""
        real = self.null_mask[0].nonzero()
        length = int(real.max()) + 1 if len(real) else 1
        return self.null_tokens[:, :length], self.null_mask[:, :length]

    def scheduler_config(self) -> dict[str, Any]:
        c = self.config
        return {"num_train_timesteps": c.num_train_timesteps, "beta_start": c.beta_start, "beta_end": c.beta_end,
                "beta_schedule": c.beta_schedule}  # fmt: skip

    def ddim_scheduler(self) -> DDIMScheduler:
        """The sampling scheduler, in ε-space (:func:`guided_epsilon` converts a v prediction)."""
        from diffusers import DDIMScheduler

        return DDIMScheduler(**self.scheduler_config(), prediction_type="epsilon", clip_sample=False,
                             set_alpha_to_one=True, timestep_spacing="trailing")  # fmt: skip

    def objective(self) -> DiffusionObjective:
        return DiffusionObjective(self)


class DenoiserModel(Denoiser):
    """The space-time UNet (with HARIVO's mapping network and token generator when enabled) over
    ``[B, C, T, H, W]``: a spatial stage-1 latent or pixels. With λ_DC > 0 it also owns the DC projection
    head and its queue of negatives (``dc_queue``; ``dc_ptr`` and ``dc_count`` say where the next entry
    goes and how many are filled)."""

    Config = DenoiserConfig

    def __init__(self, config: DenoiserConfig) -> None:
        config.validate()
        super().__init__(config)
        self.unet = UNet3D(config.unet_config())
        self.dc_head: ProjectionHead | None = None
        if config.lambda_dc > 0:
            c = config.bottleneck_channels
            self.dc_head = ProjectionHead(c)
            self.register_buffer("dc_queue", torch.zeros(config.dc_queue, c))
            self.register_buffer("dc_ptr", torch.zeros(1, dtype=torch.long))
            self.register_buffer("dc_count", torch.zeros(1, dtype=torch.long))

    @classmethod
    def shape_fields(cls, latent_shape: tuple[int, ...], source: str) -> dict[str, int]:
        if len(latent_shape) != 4:
            raise ConfigError(f"{source} has a vector latent {tuple(latent_shape)}; the diffusion sampler needs a "
                              "spatial one (train unetldm with --set decoder.latent=spatial) or pixel space (leave "
                              "out --video); the prior sampler (--sampler prior) denoises latent vectors")  # fmt: skip
        channels, frames, height, width = latent_shape
        if height != width:
            raise ConfigError(f"{source}: the latent is {height}×{width}; the denoiser takes square latents")
        return {"channels": channels, "frames": frames, "size": height}

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        return self.config.latent_shape

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
        """The prediction, plus λ_TRS·L_TRS (Eq. 3) and λ_DC·L_DC (Eq. 4) when their weights are positive."""
        c = self.config
        if c.lambda_trs <= 0 and c.lambda_dc <= 0:
            return self.unet(x_t, t, tokens, mask), {}
        prediction, aux = self.unet.forward_with_aux(x_t, t, tokens, mask)
        terms = {}
        if c.lambda_trs > 0:
            terms["trs"] = c.lambda_trs * trs_loss(aux["attn"])
        if c.lambda_dc > 0:
            terms["dc"] = c.lambda_dc * self.contrastive_loss(aux["h"])
        return prediction, terms

    def contrastive_loss(self, h: torch.Tensor) -> torch.Tensor:
        """L_DC (Eq. 4) on the bottleneck ``h [B, T, C, h, w]``: two random frames of each video are the
        positive pair (z^(1), z^(2)); the negatives are the other videos of the batch and the queue (the
        earlier steps' positive pairs). In training mode this step's pairs are then enqueued."""
        if self.dc_head is None:
            raise ConfigError("the DC loss needs denoiser.lambda_dc > 0 (its projection head is built then)")
        b, frames = h.shape[:2]
        first = torch.randint(0, frames, (b,), device=h.device)
        second = (first + torch.randint(1, frames, (b,), device=h.device)) % frames  # a different frame
        rows = torch.arange(b, device=h.device)
        z1 = F.normalize(self.dc_head(h[rows, first]).float(), dim=-1)  # [B, c]
        z2 = F.normalize(self.dc_head(h[rows, second]).float(), dim=-1)
        queue = self.dc_queue[: int(self.dc_count)].clone()  # a copy: the queue is updated below
        loss = decoupled_contrastive_loss(z1, z2, queue, self.config.dc_tau)
        if self.training:
            self._enqueue(torch.cat([z1, z2]).detach())
        return loss

    @torch.no_grad()
    def _enqueue(self, z: torch.Tensor) -> None:
        size = self.dc_queue.shape[0]
        z = z[-size:]
        index = (int(self.dc_ptr) + torch.arange(len(z), device=z.device)) % size
        self.dc_queue[index] = z.to(self.dc_queue)
        self.dc_ptr.fill_((int(self.dc_ptr) + len(z)) % size)
        self.dc_count.fill_(min(int(self.dc_count) + len(z), size))


# --------------------------------------------------------------------------- the objective


def trs_loss(maps: list[torch.Tensor]) -> torch.Tensor:
    """L_TRS, Eq. 3: Σ_i λ_i Σ_j |A_i^(j) − A_i^(j−1)| over the N decoder self-attention layers, λ_i = i/N.

    ``maps[i]`` is ``[B, T, heads, HW, HW]`` (later layers last). |·| is read as the L1 distance
    between the two frames' attention distributions of each query (Σ over keys, in [0, 2]), averaged
    over queries, heads, videos and frame pairs — so the term does not grow with H·W or T.
    """
    n = len(maps)
    total = maps[0].new_zeros(())
    for i, a in enumerate(maps, start=1):
        distance = (a[:, 1:] - a[:, :-1]).abs().sum(-1)  # [B, T-1, heads, HW]
        total = total + (i / n) * distance.mean()
    return total


def decoupled_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, queue: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 4, −⟨z1, z2⟩/τ + log Σ_q exp(⟨z1, z_q⟩/τ), averaged over the batch (Yeh et al.'s DCL: the positive
    is not in the denominator). ``z1, z2 [B, c]`` and ``queue [Q, c]`` are unit vectors; each anchor's
    negatives are the queue and both views of the batch's other videos. With none (one video, an empty
    queue) only the positive term is left."""
    b = z1.shape[0]
    positive = (z1 * z2).sum(-1) / tau  # [B]
    in_batch = z1 @ torch.cat([z1, z2]).T / tau  # [B, 2B]
    own = torch.eye(b, dtype=torch.bool, device=z1.device).repeat(1, 2)  # the anchor's own video
    logits = torch.cat([in_batch.masked_fill(own, float("-inf")), z1 @ queue.to(z1).T / tau], dim=1)
    if b == 1 and queue.shape[0] == 0:
        return -positive.mean()
    return (-positive + torch.logsumexp(logits, dim=1)).mean()


class DiffusionObjective(DenoiserObjective):
    """Named, weighted terms: ``mse`` (ε or v) and the network's own (:meth:`Denoiser.predict`: the UNet's
    ``trs``, λ_TRS·Eq. 3, and ``dc``, λ_DC·Eq. 4).

    ``batch.latent`` is x_0 already multiplied by ``latent_scale`` (the training stage does it). Each
    step draws t ~ U{0, ..., N−1} and ε ~ N(0, I) and noises with ``DDPMScheduler.add_noise``; the target
    is ε or ``get_velocity(x_0, ε, t)``. In training mode a caption is replaced by the empty one with
    probability ``caption_dropout``.
    """

    def __init__(self, model: Denoiser) -> None:
        from diffusers import DDPMScheduler

        c = model.config
        self.config = c
        self.scheduler = DDPMScheduler(**model.scheduler_config(), prediction_type=c.prediction_type,
                                       clip_sample=False)  # fmt: skip

    def loss(self, model: nn.Module, batch: DenoiserBatch) -> dict[str, torch.Tensor]:
        c = self.config
        x0 = batch.latent  # [B, *latent_shape]
        b = x0.shape[0]
        noise = torch.randn_like(x0)
        t = torch.randint(0, c.num_train_timesteps, (b,), device=x0.device)
        x_t = self.scheduler.add_noise(x0, noise, t)
        target = noise if c.prediction_type == "epsilon" else self.scheduler.get_velocity(x0, noise, t)

        tokens, mask = batch.tokens, batch.mask
        if model.training and c.caption_dropout > 0:
            drop = torch.rand(b, device=x0.device) < c.caption_dropout
            tokens, mask = drop_captions(tokens, mask, batch.null_tokens, batch.null_mask, drop)

        prediction, terms = model.predict(x_t, t, tokens, mask)
        return {"mse": F.mse_loss(prediction.float(), target.float()), **terms}


# --------------------------------------------------------------------------- sampling


def guided_epsilon(unet: UNetFn, tokens: torch.Tensor, mask: torch.Tensor, null_tokens: torch.Tensor,
                   null_mask: torch.Tensor, cfg: float, prediction_type: str = "epsilon",
                   alphas_cumprod: torch.Tensor | None = None) -> Denoise:  # fmt: skip
    """``denoise(x_t, t) -> ε`` with classifier-free guidance (Algorithm 1, line 1):
    ε = ε(x_t, ∅) + cfg·(ε(x_t, c) − ε(x_t, ∅)), both halves in ONE UNet call on [∅; c] (the captions
    padded to a common length); with cfg = 1 only the conditional half is run. A v prediction becomes
    ε = √ᾱ_t·v + √(1−ᾱ_t)·x_t (``DDIMScheduler.step``'s formula; needs ``alphas_cumprod``)."""
    b = tokens.shape[0]
    if cfg != 1.0:
        length = max(tokens.shape[1], null_tokens.shape[1])
        null_tokens, null_mask = pad_text(null_tokens.to(tokens.dtype), null_mask, length)
        cond_tokens, cond_mask = pad_text(tokens, mask, length)
        both_tokens = torch.cat([null_tokens.expand(b, -1, -1), cond_tokens])  # [2B, L, d]
        both_mask = torch.cat([null_mask.expand(b, -1), cond_mask])

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        step = int(t)
        if cfg == 1.0:
            out = unet(x, torch.full((b,), step, device=x.device, dtype=torch.long), tokens, mask)
        else:
            both = unet(torch.cat([x, x]), torch.full((2 * b,), step, device=x.device, dtype=torch.long),
                        both_tokens, both_mask)  # fmt: skip
            uncond, cond = both.chunk(2)
            out = uncond + cfg * (cond - uncond)
        if prediction_type == "v_prediction":
            alpha_bar = alphas_cumprod[step].to(x.device)  # a float32 scalar, as in the scheduler
            out = alpha_bar**0.5 * out + (1 - alpha_bar) ** 0.5 * x
        return out

    return denoise


def mg_guidance(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: float, mg_alpha: float) -> torch.Tensor:
    """Mitigating-gradient sampling, Algorithm 1 lines 2–5, per video, for ``x_t, eps [B, C, F, H, W]``:

        x̂ = (x_t − √(1−ᾱ_t)·ε) / √ᾱ_t                        (the predicted x_0)
        D = x̂[:, :, 1:] − x̂[:, :, :-1]                        (consecutive frames)
        S = median_j(‖D_j‖₂)² / log(F − 1)                     (2σ² of Eq. 7, robust to outliers)
        G = 2·exp(−‖D_j‖²/S)·D_j/S·ω,  ω = √((1−ᾱ_t)/ᾱ_t)     (the gradient of Eq. 7's kernel)
        ε ← ε + α·concat(0, G)                                 (frame j moves towards frame j−1)

    A video whose predicted frames are identical (S = 0) is left unchanged, as is any video of
    F ≤ 2 frames (log(F − 1) ≤ 0). Computed in float32.
    """
    frames = x_t.shape[2]
    if mg_alpha == 0 or frames <= 2:
        return eps
    x, e = x_t.float(), eps.float()
    x0 = (x - (1.0 - alpha_bar) ** 0.5 * e) / alpha_bar**0.5
    d = x0[:, :, 1:] - x0[:, :, :-1]  # [B, C, F-1, H, W]
    sq = d.pow(2).sum(dim=(1, 3, 4))  # [B, F-1]  ‖D_j‖²
    s = sq.sqrt().median(dim=1).values.pow(2) / math.log(frames - 1)  # [B]
    ok = s > 0
    s = torch.where(ok, s, torch.ones_like(s))  # identical frames: no division by zero
    omega = ((1.0 - alpha_bar) / alpha_bar) ** 0.5
    kernel = torch.exp(-sq / s[:, None])[:, None, :, None, None]  # [B, 1, F-1, 1, 1]
    g = 2.0 * kernel * d / s[:, None, None, None, None] * omega
    g = torch.where(ok[:, None, None, None, None], g, torch.zeros_like(g))
    g = torch.cat([torch.zeros_like(g[:, :, :1]), g], dim=2)  # concat(0, G): the first frame is not moved
    return (e + mg_alpha * g).to(eps.dtype)


def ddim_sample(denoise: Denoise, scheduler: DDIMScheduler, x: torch.Tensor, mg_alpha: float = 0.0,
                eta: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """The DDIM loop over ``scheduler.timesteps`` (set them first) from ``x = x_T``, in ε-space, with
    MG sampling when ``mg_alpha > 0``; returns x_0."""
    for t in scheduler.timesteps:
        eps = denoise(x, t)
        if mg_alpha > 0:
            eps = mg_guidance(x, eps, float(scheduler.alphas_cumprod[int(t)]), mg_alpha)
        x = scheduler.step(eps, t, x, eta=eta, generator=generator).prev_sample
    return x


@dataclass
class SamplingConfig:
    steps: int = 25  # DDIM steps (HARIVO App. D)
    cfg: float = 7.5  # classifier-free guidance scale; 1 = conditional only, 0 = unconditional
    mg_alpha: float = 40.0  # α of MG sampling (Algorithm 1; HARIVO uses 40–50); 0 disables it
    eta: float = 0.0  # DDIM's η: 0 is deterministic given x_T


def check_sampling(config: SamplingConfig, num_train_timesteps: int) -> None:
    """One clear error per bad option."""
    if not 1 <= config.steps <= num_train_timesteps:
        raise ConfigError(f"--steps must be between 1 and {num_train_timesteps} (the denoiser's training "
                          f"timesteps), got {config.steps}")  # fmt: skip
    if not config.cfg >= 0:
        raise ConfigError(f"--cfg (the classifier-free guidance scale) must be ≥ 0, got {config.cfg}")
    if not config.mg_alpha >= 0:
        raise ConfigError(f"--mg-alpha must be ≥ 0 (0 disables MG sampling), got {config.mg_alpha}")
    if not 0 <= config.eta <= 1:
        raise ConfigError(f"sampler eta (DDIM's η) must be in [0, 1], got {config.eta}")


def draw_latents(model: Denoiser, unet: UNetFn, config: SamplingConfig, tokens: torch.Tensor,
                 mask: torch.Tensor, null_tokens: torch.Tensor, null_mask: torch.Tensor, n: int,
                 seed: int | None) -> torch.Tensor:  # fmt: skip
    """``[B·n, *latent_shape]`` stage-1 latents for token states ``[B, L, d]`` and mask ``[B, L]``, text 0's ``n``
    first: DDIM with classifier-free guidance and MG sampling from seeded noise. ``model`` gives the schedule,
    the shape and the latent scale; ``unet`` is its network or an exported engine's step (every backend runs
    this one loop). x_T is drawn on the CPU, so a seed gives the same noise on any device."""
    tokens = tokens.repeat_interleave(n, dim=0)  # [B·n, L, d]
    mask = mask.bool().repeat_interleave(n, dim=0)
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    x = torch.randn((tokens.shape[0], *model.latent_shape), generator=generator).to(tokens.device, tokens.dtype)
    scheduler = model.ddim_scheduler()
    scheduler.set_timesteps(config.steps)
    denoise = guided_epsilon(unet, tokens, mask, null_tokens, null_mask, config.cfg,
                             model.config.prediction_type, scheduler.alphas_cumprod)  # fmt: skip
    x0 = ddim_sample(denoise, scheduler, x, config.mg_alpha, config.eta, generator)
    return x0 / model.config.latent_scale


class DiffusionSampler(Sampler):
    """DDIM + classifier-free guidance + MG sampling with a :class:`DenoiserModel`."""

    Config = SamplingConfig
    Model = DenoiserModel
    stage = "diffusion"
    model_section = "denoiser"

    @classmethod
    def build_model(cls, section: dict[str, Any]) -> Denoiser:
        """The denoiser a diffusion run describes in its ``denoiser`` section."""
        values = {k: v for k, v in section.items() if k != "name"}
        return cls.Model(from_dict(cls.Model.Config, values, where="run config denoiser"))

    def __init__(self, config: SamplingConfig, model: Denoiser) -> None:
        check_sampling(config, model.config.num_train_timesteps)
        self.config, self.model = config, model

    @torch.no_grad()
    def sample(self, text: TextEmbedding, n: int = 1, seed: int | None = None) -> torch.Tensor:
        """``[B·n, C, T, H, W]`` stage-1 latents (the model's samples divided by ``latent_scale``), text 0's
        ``n`` first. The same seed gives the same latents; ``None`` draws a random one."""
        param = next(self.model.parameters())
        tokens, mask = text.tokens.to(param.device, param.dtype), text.mask.to(param.device)
        null_tokens, null_mask = self.model.null_text()
        return draw_latents(self.model, self.model.unet, self.config, tokens, mask, null_tokens, null_mask, n, seed)
