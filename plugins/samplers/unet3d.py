"""The diffusion sampler's denoiser: a text-conditioned, space-time factorized 3D UNet, with HARIVO's
noise mapping network and frame-wise token generator as options.

The trunk is the VDM / latent-diffusion video UNet (seeds 001 and 003): every frame goes through 2D
residual blocks (GroupNorm, SiLU, 3×3 convolutions, the timestep embedding added), spatial
self-attention at the low resolutions only, cross-attention to the text encoder's token states, and
after each of those a temporal attention layer mixes the frames at every spatial position (HARIVO
§3.1, "temporal attention layers between spatial layers", App. A's ``(b f) c h w → (b h w) f c``).
Down- and upsampling act on H and W only, so any number of frames T works (16, 8, 4, ...).

Frames travel folded into the batch, ``[B·T, C, H, W]``, as in HARIVO's App. A; the temporal layers
unfold them. :meth:`UNet3D.forward` is a pure function ``(x_t, t, tokens, mask) -> prediction``: no
Python-side state and no control flow on tensor values (only on shapes and config flags), so the
export can trace it into ONNX / TensorRT unchanged. :meth:`UNet3D.forward_with_aux` runs the same
network and also returns what HARIVO's training losses read: the decoder's spatial self-attention
maps (TRS, Eq. 3) and the bottleneck h (decoupled contrastive loss, Eq. 4).

HARIVO options (off by default):

- ``noise_mapping`` (§3.2, App. A, Fig. 3a): a mapping network l^M "in front of the U-Net" — a 3D
  convolution over (f, h, w), temporal attention and a zero-initialised linear layer, with residuals
  — applied to the UNet's input x_t at every timestep. At the first sampling step that input is the
  IID Gaussian x_T, which it maps to "a distribution more suitable for generating videos"; in training
  it sees the x_t built from Gaussian ε by the ordinary forward process (so the reparametrisation
  trick stays valid) and learns end to end from the denoising loss. This is Eq. 2's f_{l^M,θ,φ}(x_t,
  t, c) and App. C's Fig. A1 ("before and after the mapping network across all sampling timesteps").
  Starting as the identity, it changes nothing until trained.
- ``frame_tokens`` (§3.5, App. A): a generator t_θ: (M × D) → (F × K × D) — linear + SiLU per token,
  a 1D convolution across the M token positions, then linear layers — makes K tokens per frame from
  the caption's tokens; frame f cross-attends to [caption tokens; its K tokens] (the mask extended).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from t2vkit.errors import ConfigError


@dataclass
class UNetConfig:
    # what the UNet is given, filled by the training stage
    channels: int = 4  # C of x_t: the stage-1 latent's channels, or the clip's in pixel space
    text_dim: int = 384  # d of the text token states
    frames: int = 16  # T; used only by the frame-wise token generator (the rest takes any T)
    # the trunk
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4)  # one level per entry; H and W halve between levels
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (1, 2)  # levels (indices into channel_mult) with spatial self-attention
    heads: int = 4  # of every attention layer; the channels of each level must be a multiple
    dropout: float = 0.0
    # HARIVO options
    noise_mapping: bool = False  # the mapping network l^M on the UNet's input (§3.2)
    mapping_channels: int = 64  # its hidden width (the paper works at C = 4 with 8 heads of 64)
    frame_tokens: bool = False  # frame-wise tokens from a token generator t_θ (§3.5)
    tokens_per_frame: int = 3  # K
    max_text_len: int = 77  # M: the token positions t_θ's 1D convolution spans (longer captions are refused)

    @property
    def levels(self) -> int:
        return len(self.channel_mult)

    @property
    def spatial_factor(self) -> int:
        """H and W must be multiples of this (they halve between levels)."""
        return 2 ** (self.levels - 1)

    @property
    def bottleneck_channels(self) -> int:
        return self.base_channels * self.channel_mult[-1]

    def validate(self, section: str = "denoiser") -> None:
        """Raise a ConfigError for options this network cannot take, naming the field."""
        positive = ("channels", "text_dim", "frames", "base_channels", "num_res_blocks", "heads", "mapping_channels",
                    "tokens_per_frame", "max_text_len")  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{section}.{name} must be at least 1, got {getattr(self, name)}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ConfigError(f"{section}.channel_mult must be positive integers, got {list(self.channel_mult)}")
        bad = [level for level in self.attention_levels if not 0 <= level < self.levels]
        if bad:
            raise ConfigError(f"{section}.attention_levels: level {bad[0]} does not exist; the levels of "
                              f"channel_mult {list(self.channel_mult)} are 0..{self.levels - 1}")  # fmt: skip
        for width in [self.base_channels * m for m in self.channel_mult] + [self.mapping_channels]:
            if width % self.heads:
                raise ConfigError(f"{section}.heads = {self.heads} does not divide a layer of {width} channels")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{section}.dropout must be in [0, 1), got {self.dropout}")


# --------------------------------------------------------------------------- building blocks


def group_norm(channels: int) -> nn.GroupNorm:
    """32 groups (fewer when ``channels`` is not a multiple of 32, as in tiny test nets)."""
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer / DDPM sinusoidal embedding: ``[N]`` positions (timesteps, frame indices) → ``[N, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    args = positions.float()[:, None] * freqs[None]  # [N, half]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))  # [N, dim]


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters, so the residual branch it ends starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: torch.Tensor | None = None,
              return_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """Multi-head attention of ``q [N, Lq, C]`` over ``k, v [N, Lk, C]`` (mask ``[N, Lk]`` bool, True = attend).

    ``scaled_dot_product_attention`` (fused, memory-efficient kernels where they exist) unless the
    weights are asked for; then they are computed explicitly, in float32, and returned as
    ``[N, heads, Lq, Lk]``.
    """
    n, lq, c = q.shape
    q, k, v = (a.reshape(n, a.shape[1], heads, c // heads).transpose(1, 2) for a in (q, k, v))  # [N, h, L, c/h]
    bias = None if mask is None else mask[:, None, None, :]  # [N, 1, 1, Lk] broadcast over heads and queries
    if not return_weights:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return out.transpose(1, 2).reshape(n, lq, c), None
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(c // heads)  # [N, h, Lq, Lk]
    if bias is not None:
        scores = scores.masked_fill(~bias, float("-inf"))
    weights = scores.softmax(-1)
    out = (weights.to(v.dtype) @ v).transpose(1, 2).reshape(n, lq, c)
    return out, weights


class ResBlock(nn.Module):
    """Per-frame 2D residual block: GN → SiLU → 3×3 conv, + timestep embedding, GN → SiLU → dropout → 3×3 conv."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # x [BT, Cin, H, W], emb [BT, E]
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h  # [BT, Cout, H, W]


class SpatialSelfAttention(nn.Module):
    """Self-attention among the H·W positions of each frame, with a residual."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, return_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        n, c, h, w = x.shape  # n = B·T
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [BT, HW, C]
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        out, weights = attention(q, k, v, self.heads, return_weights=return_weights)
        out = self.proj(out).transpose(1, 2).reshape(n, c, h, w)
        return x + out, weights  # weights: [BT, heads, HW, HW] or None


class CrossAttention(nn.Module):
    """Each frame's positions attend to its text context (LDM's conditioning, seed 003).

    The context is ``[B, Tc, L, d]`` with Tc = 1 (every frame reads the same caption tokens: the T
    frames' queries are folded into one sequence, so the keys are projected once per video) or Tc = T
    (frame-wise tokens: one context per frame).
    """

    def __init__(self, channels: int, context_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = group_norm(channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape  # n = B·T
        b, tc, length, _ = context.shape
        queries = self.norm(x).flatten(2).transpose(1, 2).reshape(b * tc, (n // (b * tc)) * h * w, c)
        k, v = self.kv(context.reshape(b * tc, length, -1)).chunk(2, dim=-1)  # [B·Tc, L, C] each
        out, _ = attention(self.q(queries), k, v, self.heads, mask=mask.reshape(b * tc, length))
        out = self.proj(out).reshape(n, h * w, c).transpose(1, 2).reshape(n, c, h, w)
        return x + out


class TemporalAttention(nn.Module):
    """Self-attention across the T frames at every spatial position (App. A: ``(b f) c h w → (b h w) f c``).

    A sinusoidal frame-index embedding is added to the normalised input, since attention alone cannot
    tell the frames' order. The output projection starts at zero: a new temporal layer is the identity.
    """

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:  # x [B·T, C, H, W]
        n, c, h, w = x.shape
        seq = x.reshape(n // frames, frames, c, h * w).permute(0, 3, 1, 2).reshape(-1, frames, c)  # [B·HW, T, C]
        position = sinusoidal_embedding(torch.arange(frames, device=x.device), c).to(seq.dtype)  # [T, C]
        q, k, v = self.qkv(self.norm(seq) + position).chunk(3, dim=-1)
        out, _ = attention(q, k, v, self.heads)
        seq = seq + self.proj(out)
        return seq.reshape(n // frames, h * w, frames, c).permute(0, 2, 3, 1).reshape(n, c, h, w)


class SpaceTimeBlock(nn.Module):
    """Residual block → [spatial self-attention] → cross-attention → temporal attention."""

    def __init__(self, in_channels: int, out_channels: int, config: UNetConfig, emb_dim: int, self_attention: bool):
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, emb_dim, config.dropout)
        self.self_attn = SpatialSelfAttention(out_channels, config.heads) if self_attention else None
        self.cross_attn = CrossAttention(out_channels, config.text_dim, config.heads)
        self.temporal = TemporalAttention(out_channels, config.heads)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, mask: torch.Tensor, frames: int,
                return_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        x = self.res(x, emb)
        weights = None
        if self.self_attn is not None:
            x, weights = self.self_attn(x, return_weights)
        x = self.cross_attn(x, context, mask)
        return self.temporal(x, frames), weights


class Downsample(nn.Module):
    """Halve H and W (a stride-2 3×3 convolution per frame); T is kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W (nearest neighbour, then a 3×3 convolution per frame); T is kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


# --------------------------------------------------------------------------- HARIVO modules


class NoiseMapping(nn.Module):
    """HARIVO's mapping network l^M (§3.2; App. A's ``MappingLayer``): ``[B, C, T, H, W]`` → same shape.

    A 3×3×3 convolution over (f, h, w) lifts the C channels to ``hidden`` (attention over C = 1 or 4
    channels could do little), a temporal attention layer mixes the frames at every position, and a
    zero-initialised linear layer brings it back to C; each part has a residual, the whole network
    too; the last layer starts at zero, so the network starts as the identity (App. C: trained, it
    makes "small but non-negligible" changes).
    """

    def __init__(self, channels: int, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.conv = nn.Conv3d(channels, hidden, 3, padding=1)
        self.norm = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.proj_out = zero_init(nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = F.silu(self.conv(x))  # [B, D, T, H, W]
        seq = y.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, -1)  # [(B H W), T, D]
        position = sinusoidal_embedding(torch.arange(t, device=x.device), seq.shape[-1]).to(seq.dtype)
        q, k, v = self.qkv(self.norm(seq) + position).chunk(3, dim=-1)
        out, _ = attention(q, k, v, self.heads)
        seq = seq + self.attn_out(out)
        delta = self.proj_out(seq).reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)  # [B, C, T, H, W]
        return x + delta


class FrameTokenGenerator(nn.Module):
    """HARIVO's frame-wise token generator t_θ: (M × D) → (F × K × D) (§3.5; App. A's ``Frame_wise_token``).

    Linear + SiLU on each caption token, then a 1D convolution (kernel 1) whose input channels are the
    M token positions and whose output channels are the F·K new tokens — a learned mixture of the
    positions per new token — then linear layers on each new token. Padding positions are zeroed
    before the mixture, so the tokens do not depend on how far a batch was padded; a caption of
    L < M tokens uses the first L columns of the mixture (the same as zero-padding it to M).
    """

    def __init__(self, text_dim: int, max_text_len: int, frames: int, per_frame: int) -> None:
        super().__init__()
        self.frames, self.per_frame, self.max_text_len = frames, per_frame, max_text_len
        self.pre = nn.Sequential(nn.Linear(text_dim, text_dim), nn.SiLU())
        self.mix = nn.Conv1d(max_text_len, frames * per_frame, kernel_size=1, bias=False)
        self.post = nn.Sequential(nn.SiLU(), nn.Linear(text_dim, text_dim), nn.SiLU(), nn.Linear(text_dim, text_dim))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``tokens [B, L, d]``, ``mask [B, L]`` → ``[B, F, K, d]``."""
        b, length, d = tokens.shape
        h = self.pre(tokens) * mask[..., None].to(tokens.dtype)  # [B, L, d], padding zeroed
        mixed = torch.einsum("ol,bld->bod", self.mix.weight[:, :length, 0], h)  # [B, F·K, d]
        return self.post(mixed).reshape(b, self.frames, self.per_frame, d)


# --------------------------------------------------------------------------- the UNet


class UNet3D(nn.Module):
    """``forward(x_t [B, C, T, H, W], t [B], tokens [B, L, d], mask [B, L]) -> [B, C, T, H, W]``."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        ch = config.base_channels
        emb_dim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.mapping = (
            NoiseMapping(config.channels, config.mapping_channels, config.heads) if config.noise_mapping else None
        )
        self.token_generator = (
            FrameTokenGenerator(config.text_dim, config.max_text_len, config.frames, config.tokens_per_frame)
            if config.frame_tokens
            else None
        )
        self.conv_in = nn.Conv2d(config.channels, ch, 3, padding=1)

        self.down = nn.ModuleList()
        skips = [ch]
        for level, mult in enumerate(config.channel_mult):
            out = config.base_channels * mult
            for _ in range(config.num_res_blocks):
                self.down.append(SpaceTimeBlock(ch, out, config, emb_dim, level in config.attention_levels))
                ch = out
                skips.append(ch)
            if level < config.levels - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)

        # the bottleneck (h-space, §3.4): res → self-attention → cross → temporal → res
        self.mid = SpaceTimeBlock(ch, ch, config, emb_dim, self_attention=True)
        self.mid_res = ResBlock(ch, ch, emb_dim, config.dropout)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            out = config.base_channels * mult
            for _ in range(config.num_res_blocks + 1):
                self.up.append(SpaceTimeBlock(ch + skips.pop(), out, config, emb_dim, level in config.attention_levels))
                ch = out
            if level > 0:
                self.up.append(Upsample(ch))

        self.norm_out = group_norm(ch)
        self.conv_out = nn.Conv2d(ch, config.channels, 3, padding=1)

    def check_inputs(self, x_t: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> None:
        """Shape checks only (no tensor values are read, so tracing for export is unaffected)."""
        c = self.config
        if x_t.dim() != 5 or x_t.shape[1] != c.channels:
            raise ValueError(f"the denoiser takes x_t of shape [B, {c.channels}, T, H, W], got {tuple(x_t.shape)}")
        if x_t.shape[3] % c.spatial_factor or x_t.shape[4] % c.spatial_factor:
            raise ValueError(f"H and W must be multiples of {c.spatial_factor} ({c.levels} levels), "
                             f"got {x_t.shape[3]}×{x_t.shape[4]}")  # fmt: skip
        if tokens.dim() != 3 or tokens.shape[2] != c.text_dim or tuple(mask.shape) != tuple(tokens.shape[:2]):
            raise ValueError(f"the denoiser takes tokens [B, L, {c.text_dim}] and a mask [B, L], "
                             f"got {tuple(tokens.shape)} and {tuple(mask.shape)}")  # fmt: skip
        if tokens.shape[0] != x_t.shape[0]:
            raise ValueError(f"x_t has batch {x_t.shape[0]} but the tokens have {tokens.shape[0]}")
        if c.frame_tokens and x_t.shape[2] != c.frames:
            raise ValueError(f"the frame-wise token generator makes tokens for {c.frames} frames, got {x_t.shape[2]}")
        if c.frame_tokens and tokens.shape[1] > c.max_text_len:
            raise ValueError(f"the frame-wise token generator takes up to {c.max_text_len} tokens "
                             f"(denoiser.max_text_len), got {tokens.shape[1]}")  # fmt: skip

    def context(self, tokens: torch.Tensor, mask: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention context ``[B, Tc, L', d]`` and mask ``[B, Tc, L']``: Tc = 1 and L' = L, or with
        frame-wise tokens Tc = T and L' = L + K (each frame's K tokens appended)."""
        mask = mask.bool()
        if self.token_generator is not None:
            b, length, d = tokens.shape
            extra = self.token_generator(tokens, mask)  # [B, T, K, d]
            context = torch.cat([tokens[:, None].expand(b, frames, length, d), extra.to(tokens.dtype)], dim=2)
            mask = torch.cat([mask[:, None].expand(b, frames, length), mask.new_ones(b, frames, extra.shape[2])], 2)
        else:
            context, mask = tokens[:, None], mask[:, None]
        # a caption with no real token (an all-False mask) attends to all positions instead of giving NaN
        return context, mask | ~mask.any(dim=-1, keepdim=True)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The prediction (ε or v, as trained) for noisy videos ``x_t`` at timesteps ``t``."""
        return self._run(x_t, t, tokens, mask, aux=False)[0]

    def forward_with_aux(self, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor,
                         mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, object]]:  # fmt: skip
        """The prediction and, for the training losses: ``attn``, the decoder's spatial self-attention
        weights in the order they run (a list of ``[B, T, heads, HW, HW]``, TRS, Eq. 3), and ``h``, the
        bottleneck ``[B, T, C, h, w]`` (DC, Eq. 4)."""
        return self._run(x_t, t, tokens, mask, aux=True)

    def _run(self, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
             aux: bool) -> tuple[torch.Tensor, dict[str, object]]:  # fmt: skip
        self.check_inputs(x_t, tokens, mask)
        b, c, frames, height, width = x_t.shape
        if self.mapping is not None:
            x_t = self.mapping(x_t)  # l^M, §3.2
        context, context_mask = self.context(tokens.to(x_t.dtype), mask, frames)

        t = t.reshape(-1).expand(b)
        emb = self.time_mlp(sinusoidal_embedding(t, self.config.base_channels).to(x_t.dtype))  # [B, E]
        emb = emb.repeat_interleave(frames, dim=0)  # [B·T, E]

        x = x_t.transpose(1, 2).reshape(b * frames, c, height, width)  # frames folded into the batch
        x = self.conv_in(x)
        skips = [x]
        for block in self.down:
            x = block(x) if isinstance(block, Downsample) else block(x, emb, context, context_mask, frames)[0]
            skips.append(x)

        x, _ = self.mid(x, emb, context, context_mask, frames)
        x = self.mid_res(x, emb)
        extras: dict[str, object] = {}
        if aux:
            extras["h"] = x.reshape(b, frames, *x.shape[1:])
            extras["attn"] = []

        for block in self.up:
            if isinstance(block, Upsample):
                x = block(x)
                continue
            x, weights = block(torch.cat([x, skips.pop()], dim=1), emb, context, context_mask, frames, aux)
            if aux and weights is not None:
                extras["attn"].append(weights.reshape(b, frames, *weights.shape[1:]))

        x = self.conv_out(F.silu(self.norm_out(x)))  # [B·T, C, H, W]
        return x.reshape(b, frames, c, height, width).transpose(1, 2), extras
