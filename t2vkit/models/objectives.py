"""The stage-1 objective of seed 000 (Appendix A.2): a Wasserstein autoencoder for videos.

How the paper's equations map to the loss terms (names as the engine logs them):

- Eq. A.1, D_W = inf_Q E[c(x, G(E(x)))] + λ_z·D(q(z_v), p(z_v)): the autoencoder loss is the cost
  ``c`` below plus λ_z times the parts of the divergence that can train the autoencoder. The
  encoder is deterministic (``z = E(x)``), as in WAE; p(z_v) = N(0, σ²I), σ = ``prior_sigma``.
- Eq. A.2, the cost c(x, y) with y = G(E(x)):
    ``pixel``      λ_pixel·mean|x − y|                                   (L1, per element; the paper's)
                   or λ_pixel·mean (x − y)² with ``pixel_loss = "l2"``: on sparse clips (a digit on
                   black) L1's optimum is the black clip, which a small autoencoder trained without
                   D_v can sit on for thousands of steps; L2's gradient grows with the error
    ``feat_v``     λ_f·mean over D_v's scales and layers of mean|f_Dv(x) − f_Dv(y)|
                   (L1 feature matching, Pix2PixHD-style; f_Dv(x) is detached)
    ``perceptual`` λ_p·Σ over {block4_conv3, block5_conv4} of mean (φ(x) − φ(y))²
                   (squared L2 per element, VGG19 per frame; only with VGG19 weights, else skipped
                   and noted in :attr:`WAEObjective.notes`)
- Eq. A.3, D = L_f + L_Dz + L_Dv, weighted by λ_z:
    ``fm_z``  λ_z·L_f, Eq. A.4: squared L2 between D_z's hidden features of prior samples z̃ and of
              encodings E(x). We match the *batch means* of the features (Salimans et al. 2016,
              whom the paper cites for feature matching): ‖E f(z̃) − E f(z)‖² (mean over feature
              dimensions). Read literally, E_z̃ E_z ‖f(z̃) − f(z)‖² pulls every encoding's features
              towards the prior's mean feature, which would shrink the encodings together.
    L_Dz      Eq. A.5 trains D_z only (auxiliary ``disc_z`` below). "Removing the min-max between the
              autoencoder and D_z" means the autoencoder never receives D_z's adversarial gradient:
              D_z shapes the feature space, the autoencoder only matches features in it.
    ``adv_v`` λ_z·L_Dv, read as the *generator's* side of D_v's non-saturating loss,
              mean over scales of −log σ(D_v(y)): D_v's own loss (like A.5 on videos) only trains
              D_v, so the part of L_Dv an autoencoder can minimise is the generator's. Unlike D_z,
              D_v keeps its min-max (A.2 removes it only for D_z).
- Auxiliary losses (unweighted: the discriminators have their own optimizer):
    ``disc_z``  Eq. A.5: −log σ(D_z(z̃)) − log(1 − σ(D_z(E(x)))): prior = real, encoded = fake.
    ``disc_v``  the same on videos, mean over scales: real clips vs reconstructions.
- ``kl`` (VAEObjective only, the A.4.1 ablation): λ_kl·KL(N(μ, e^logvar) ‖ N(0, σ²I)), summed over
  latent dimensions, averaged over the batch.

Flags: ``use_disc_z = false`` drops D_z with ``fm_z`` and ``disc_z`` (the ablation "Base w/o D_z");
``use_disc_v = false`` drops D_v with ``feat_v``, ``adv_v`` and ``disc_v``. A term whose weight is 0
is not computed. The discriminators are called with detached parameters in the autoencoder loss,
so its backward pass reaches the autoencoder only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from t2vkit.errors import ConfigError
from t2vkit.interfaces import VideoAutoencoder, VideoObjective
from t2vkit.log import log
from t2vkit.models.discriminators import LatentDiscriminator, PatchVideoDiscriminator
from t2vkit.models.perceptual import VGG19Features, perceptual_distance

PERCEPTUAL_SKIPPED = "perceptual: skipped (no vgg19 weights)"


@dataclass
class WAELosses:
    """Stage-1 loss weights and discriminator sizes; decoder Configs inherit these fields.

    Defaults are the paper's (A.3.3, Table A.2).
    """

    lambda_pixel: float = 10.0
    pixel_loss: str = "l1"  # "l1" (the paper) or "l2" (squared error; see the module docstring)
    lambda_feat: float = 10.0  # λ_f, D_v feature matching
    lambda_z: float = 5.0  # weight of the latent divergence, Eq. A.3
    lambda_perceptual: float = 0.0025  # λ_p, VGG19 features
    vgg19: Path | None = None  # torchvision-layout VGG19 weights (.safetensors); none: λ_p term skipped
    use_disc_z: bool = True  # false: the ablation "w/o D_z"
    use_disc_v: bool = True
    prior_sigma: float = 1.0  # p(z_v) = N(0, σ²I)
    disc_z_hidden: tuple[int, ...] = (240, 240, 240)  # D_z hidden widths: 133k parameters at d_z = 64
    disc_v_width: int = 18  # D_v base width: 2.6M parameters for 1-channel clips
    disc_v_layers: int = 3  # strided layers per scale (Pix2PixHD's n_layers)
    disc_v_scales: int = 3  # Pix2PixHD's num_D


def check_losses(losses: WAELosses) -> None:
    """Refuse weights and sizes no run could use, naming the field."""
    if losses.pixel_loss not in ("l1", "l2"):
        raise ConfigError(f"decoder.pixel_loss must be l1 or l2, got {losses.pixel_loss!r}")
    for name in ("lambda_pixel", "lambda_feat", "lambda_z", "lambda_perceptual"):
        if getattr(losses, name) < 0:
            raise ConfigError(f"decoder.{name} must be ≥ 0, got {getattr(losses, name)}")
    if losses.prior_sigma <= 0:
        raise ConfigError(f"decoder.prior_sigma must be > 0, got {losses.prior_sigma}")
    if not losses.disc_z_hidden or min(losses.disc_z_hidden) < 1:
        raise ConfigError(f"decoder.disc_z_hidden needs one or more positive widths, got {losses.disc_z_hidden}")
    for name in ("disc_v_width", "disc_v_layers", "disc_v_scales"):
        if getattr(losses, name) < 1:
            raise ConfigError(f"decoder.{name} must be ≥ 1, got {getattr(losses, name)}")


def frozen_call(module: nn.Module, *args: torch.Tensor) -> Any:
    """``module(*args)`` with its parameters detached: the backward pass reaches the inputs only."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, args)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating discriminator loss, Eq. A.5: −log σ(real) − log(1 − σ(fake)), each a mean."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's non-saturating loss: −log σ(fake), a mean."""
    return F.softplus(-fake_logits).mean()


def feature_l1(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean over every (scale, layer) of mean |f(x) − f(y)|."""
    pairs = [(a, b) for rs, fs in zip(real, fake, strict=True) for a, b in zip(rs, fs, strict=True)]
    return torch.stack([(a - b).abs().mean() for a, b in pairs]).mean()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, prior_sigma: float = 1.0) -> torch.Tensor:
    """KL(N(μ, e^logvar) ‖ N(0, σ²I)), summed over latent dimensions and averaged over the batch."""
    var_p = prior_sigma**2
    kl = 0.5 * ((mu.pow(2) + logvar.exp()) / var_p - 1.0 - logvar + math.log(var_p))
    return kl.flatten(1).sum(1).mean()


class WAEObjective(VideoObjective):
    """The paper's stage-1 objective for an autoencoder of ``channels``-channel clips and latents of
    ``latent_shape`` (without the batch axis). See the module docstring for the terms."""

    def __init__(self, losses: WAELosses, channels: int, latent_shape: tuple[int, ...]) -> None:
        check_losses(losses)
        self.losses = losses
        self.latent_shape = tuple(latent_shape)
        #: facts to record in the run config (the engine's Task.notes), e.g. a skipped term
        self.notes: list[str] = []
        self.disc_z = (
            LatentDiscriminator(math.prod(self.latent_shape), losses.disc_z_hidden) if losses.use_disc_z else None
        )
        self.disc_v = (
            PatchVideoDiscriminator(channels, losses.disc_v_width, losses.disc_v_layers, losses.disc_v_scales)
            if losses.use_disc_v
            else None
        )
        self.vgg: VGG19Features | None = None
        if losses.lambda_perceptual > 0:
            if losses.vgg19 is None:
                log.warning(
                    "the perceptual term (λ_p) is skipped: no VGG19 weights given "
                    "(--set decoder.vgg19=FILE.safetensors; t2vkit.models.perceptual says how to convert torchvision's)"
                )
                self.notes.append(PERCEPTUAL_SKIPPED)
            else:
                self.vgg = VGG19Features.from_safetensors(losses.vgg19)

    def auxiliaries(self) -> dict[str, nn.Module]:
        nets: dict[str, nn.Module] = {}
        if self.disc_z is not None:
            nets["disc_z"] = self.disc_z
        if self.disc_v is not None:
            nets["disc_v"] = self.disc_v
        return nets

    def _prior(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        prior = out.get("z_prior")
        return prior if prior is not None else self.losses.prior_sigma * torch.randn_like(out["z"])

    def forward(self, model: VideoAutoencoder, video: torch.Tensor) -> dict[str, torch.Tensor]:
        z = model.encode(video)  # [B, *latent_shape]
        out = {"z": z, "recon": model.decode(z)}  # recon: [B, C, T, H, W]
        if self.disc_z is not None:  # one prior sample per step, shared by fm_z and disc_z
            out["z_prior"] = self.losses.prior_sigma * torch.randn_like(z)
        return out

    def autoencoder_loss(self, video: torch.Tensor, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        lw = self.losses
        x, y, z = video, out["recon"], out["z"]
        error = (y - x).abs() if lw.pixel_loss == "l1" else (y - x).square()
        terms = {"pixel": lw.lambda_pixel * error.mean()}
        if self.disc_v is not None and (lw.lambda_feat > 0 or lw.lambda_z > 0):
            logits, fake_feats = frozen_call(self.disc_v, y)
            if lw.lambda_feat > 0:
                with torch.no_grad():
                    _, real_feats = self.disc_v(x)
                terms["feat_v"] = lw.lambda_feat * feature_l1(real_feats, fake_feats)
            if lw.lambda_z > 0:
                terms["adv_v"] = lw.lambda_z * torch.stack([generator_loss(lg) for lg in logits]).mean()
        if self.vgg is not None:
            self.vgg.to(x.device)  # not an auxiliary (frozen, not saved): follows the data's device
            terms["perceptual"] = lw.lambda_perceptual * perceptual_distance(self.vgg, x, y)
        if self.disc_z is not None and lw.lambda_z > 0:
            with torch.no_grad():
                _, prior_feats = self.disc_z(self._prior(out))  # [B, h]
            _, feats = frozen_call(self.disc_z, z)  # [B, h]; D_z's logit is never used here
            terms["fm_z"] = lw.lambda_z * (prior_feats.mean(0) - feats.mean(0)).pow(2).mean()
        return terms

    def auxiliary_loss(self, video: torch.Tensor, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = {}
        if self.disc_z is not None:
            real, _ = self.disc_z(self._prior(out).detach())
            fake, _ = self.disc_z(out["z"].detach())
            terms["disc_z"] = discriminator_loss(real, fake)
        if self.disc_v is not None:
            real_logits, _ = self.disc_v(video)
            fake_logits, _ = self.disc_v(out["recon"].detach())
            per_scale = [discriminator_loss(r, f) for r, f in zip(real_logits, fake_logits, strict=True)]
            terms["disc_v"] = torch.stack(per_scale).mean()
        return terms


class VAEObjective(WAEObjective):
    """The VAE ablation of A.4.1: the WAE objective plus ``kl``, with z = μ + e^(logvar/2)·ε.

    The model must have ``encode_distribution(video) -> (mu, logvar)``. D_z and D_v follow the flags
    (the paper's "VAE" row keeps D_z, "VAE w/o D_z" sets ``use_disc_z = false``); D_z sees the
    sampled z.
    """

    def __init__(self, losses: WAELosses, channels: int, latent_shape: tuple[int, ...], lambda_kl: float) -> None:
        if lambda_kl < 0:
            raise ConfigError(f"decoder.lambda_kl must be ≥ 0, got {lambda_kl}")
        super().__init__(losses, channels, latent_shape)
        self.lambda_kl = lambda_kl

    def forward(self, model: VideoAutoencoder, video: torch.Tensor) -> dict[str, torch.Tensor]:
        encode_distribution = getattr(model, "encode_distribution", None)
        if encode_distribution is None:
            raise TypeError(f"VAEObjective needs a model with encode_distribution(); {type(model).__name__} has none")
        mu, logvar = encode_distribution(video)  # [B, *latent_shape] each
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # the reparameterisation trick
        out = {"z": z, "recon": model.decode(z), "mu": mu, "logvar": logvar}
        if self.disc_z is not None:
            out["z_prior"] = self.losses.prior_sigma * torch.randn_like(mu)
        return out

    def autoencoder_loss(self, video: torch.Tensor, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = super().autoencoder_loss(video, out)
        if self.lambda_kl > 0:
            terms["kl"] = self.lambda_kl * kl_divergence(out["mu"], out["logvar"], self.losses.prior_sigma)
        return terms
