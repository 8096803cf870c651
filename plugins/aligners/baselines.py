"""The paper's baselines (seed 000, 4.2.2) and ablations (4.2.3), on the progressive architecture.

All but ``direct`` keep M, E_s, G_s and the cost of Eq. 2 (:mod:`.networks`): the cost is what
teaches G_s and the mapping to land in the video latent space. They replace the divergence of Eq. 3
(D_s + bucket loss) by another alignment term between the clean caption's code zt = M(t) and the
clip's code z1 = E_s(z_v), weighted λ_zs like Eq. 3. None has a discriminator.

==============  ==========================================================  ===============================
aligner         networks                                                    alignment terms (× λ_zs)
==============  ==========================================================  ===============================
``clip``        M, E_s, G_s: the base MLP; CLIP's learnable temperature     ``infonce``
``imagebind``   M, E_s: one Linear each (ImageBind's projection layers);    ``infonce``
                G_s: the base MLP
``codi``        as ``clip``; the paper runs it on unetldm's vector latents  ``infonce``
``direct``      M: the base MLP straight into the video latent (d_t → d_zv);  ``bucket`` or ``infonce``
                no shared space, no E_s/G_s ("non-progressive")
``vicreg``      as ``progressive``                                          ``vicreg_inv/_var/_cov``
``byol``        as ``progressive`` + a predictor per modality + EMA targets  ``byol_text``, ``byol_video``
==============  ==========================================================  ===============================

InfoNCE is symmetric, CLIP-style (:func:`t2vkit.models.alignment.info_nce`); the three contrastive
baselines share it (the paper: "for all baselines, InfoNCE is used"), so they differ only in their
networks. ImageBind itself keeps its temperature fixed; ``learn_logit_scale = false`` does that.

CoDi's "non-sharing" framework (neither modality's embedding passes through the other's encoder) is
what the progressive architecture already is, so ``codi`` is ``clip``'s networks and loss; what sets it
apart in the paper is the video autoencoder (unetldm, d_z = 128), hence the warning on other latents.

VICReg and BYOL are adapted as 4.2.3 says, "each stream of augmentation data as a data modality
stream": text is one view, video the other.

- VICReg (Bardes et al. 2022): invariance (MSE), variance (hinge on the std, γ = 1) and covariance
  (off-diagonal) terms between zt and z1, with VICReg's default coefficients 25 / 25 / 1.
- BYOL (Grill et al. 2020), cross-modal: a predictor q_t, q_v per modality and target networks that
  are EMA copies of M and E_s: ``byol_text`` = nmse(q_t(M(t)), sg(E_s'(z_v))), ``byol_video`` =
  nmse(q_v(E_s(z_v)), sg(M'(t))). The momentum is a constant 0.996 (BYOL's base value), not BYOL's
  cosine ramp to 1: the ramp needs the run's total step count, which an aligner's config does not
  know, and the step would have to be saved for an exact resume. The EMA update is the objective's
  :meth:`~BYOLObjective.after_step`. The target copies are submodules of the aligner with
  ``requires_grad = False``: they are saved (and resumed) with it but never receive a gradient.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from t2vkit.errors import ConfigError
from t2vkit.interfaces import AlignBatch, Aligner, AlignObjective
from t2vkit.log import log
from t2vkit.models.alignment import bucket_loss, direct_cost, info_nce, normalized_mse, vicreg_terms

from .networks import (
    CLIP_LOGIT_SCALE,
    MLP,
    AlignerConfig,
    LogitScale,
    SharedConfig,
    SharedSpaceAligner,
    SharedSpaceObjective,
    check_config,
    latent_size,
)

# --------------------------------------------------------------------------- contrastive: clip, imagebind, codi


@dataclass
class ContrastiveConfig(SharedConfig):
    logit_scale_init: float = CLIP_LOGIT_SCALE  # ln(1/0.07), CLIP's initial temperature
    logit_scale_max: float = 100.0  # CLIP clamps exp(logit_scale) at 100
    learn_logit_scale: bool = True


def check_logit_scale(config: ContrastiveConfig | DirectConfig, name: str) -> None:
    if config.logit_scale_max <= 0:
        raise ConfigError(f"{name}: aligner.logit_scale_max must be > 0, got {config.logit_scale_max}")


class ContrastiveAligner(SharedSpaceAligner):
    """M, E_s, G_s and a temperature; trained with Eq. 2 + λ_zs·InfoNCE(M(t), E_s(z_v))."""

    Config = ContrastiveConfig

    def __init__(self, config: ContrastiveConfig) -> None:
        super().__init__(config)
        check_logit_scale(config, type(self).__name__)
        self.logit_scale = LogitScale(config.logit_scale_init, config.logit_scale_max, config.learn_logit_scale)

    def objective(self) -> ContrastiveObjective:
        return ContrastiveObjective(self)


class ContrastiveObjective(SharedSpaceObjective):
    """Eq. 2 + ``infonce`` (λ_zs × symmetric InfoNCE between the clean caption's and the clip's codes)."""

    def forward(self, aligner: Aligner, batch: AlignBatch) -> dict[str, torch.Tensor]:
        assert isinstance(aligner, ContrastiveAligner)
        return super().forward(aligner, batch) | {"logit_scale": aligner.logit_scale()}

    def divergence(self, batch: AlignBatch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"infonce": info_nce(out["zt"], out["z1"], out["logit_scale"])}


class CLIPBased(ContrastiveAligner):
    """CLIP-based (4.2.2): the progressive networks with CLIP's alignment (InfoNCE, learnable temperature)."""


class ImageBindBased(ContrastiveAligner):
    """ImageBind-based (4.2.2): "a projection layer from the video and text representation space to the
    semantic shared space": M and E_s are single Linear layers; G_s stays the base MLP."""

    projection = True


class CoDiBased(ContrastiveAligner):
    """CoDi-based (4.2.2): the mapping MLPs with InfoNCE in a non-sharing framework, which the paper runs
    on the unetldm video latents (vector, d_z = 128); other latents are allowed, with a warning."""

    def __init__(self, config: ContrastiveConfig) -> None:
        super().__init__(config)
        if tuple(config.latent_shape) != (128,):
            log.warning(
                f"codi: the paper pairs the CoDi-based aligner with unetldm's vector latents (128,); this stage-1 "
                f"run's latents are {tuple(config.latent_shape)} (training anyway)"
            )


# --------------------------------------------------------------------------- direct (non-progressive)


@dataclass
class DirectConfig(AlignerConfig):
    loss: Literal["bucket", "infonce"] = "bucket"  # "bucket": the paper's loss (Eq. 4); "infonce": CLIP's
    lambda_neg: float = 1.0
    lambda_pos: float = 1.0
    alpha: float = 2.0
    logit_scale_init: float = CLIP_LOGIT_SCALE  # used with loss = "infonce"
    logit_scale_max: float = 100.0
    learn_logit_scale: bool = True


class Direct(nn.Module, Aligner):
    """Non-progressive (4.2.3): M maps the text straight into the video latent, ``[B, d_t] → [B, *latent_shape]``,
    with no shared space. Loss: Eq. 2 without the shared terms (``feat_text``, ``pixel_text``) + λ_zs times
    the bucket loss or InfoNCE between M(t) and z_v (flattened)."""

    Config = DirectConfig

    def __init__(self, config: DirectConfig) -> None:
        super().__init__()
        check_config(config, "direct")
        check_logit_scale(config, "direct")
        if config.loss not in ("bucket", "infonce"):
            raise ConfigError(f"direct: aligner.loss must be 'bucket' or 'infonce', got {config.loss!r}")
        if config.alpha < 0:
            raise ConfigError(f"direct: aligner.alpha must be ≥ 0, got {config.alpha}")
        self.config = config
        self.latent_shape = tuple(config.latent_shape)
        self.mapping = MLP(config.text_dim, latent_size(self.latent_shape), config.hidden, config.dropout)
        if config.loss == "infonce":
            self.logit_scale = LogitScale(config.logit_scale_init, config.logit_scale_max, config.learn_logit_scale)

    def text_to_latent(self, text: torch.Tensor) -> torch.Tensor:
        return self.mapping(text).unflatten(1, self.latent_shape)  # [B, d_t] → [B, *latent_shape]

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.text_to_latent(text)

    def objective(self) -> DirectObjective:
        return DirectObjective(self)


class DirectObjective(AlignObjective):
    """``feat_text``, ``pixel_text`` on y2 = M(t̂); ``bucket`` or ``infonce`` on (M(t), z_v), × λ_zs."""

    def __init__(self, aligner: Direct) -> None:
        self.aligner = aligner
        self.config = aligner.config

    def forward(self, aligner: Aligner, batch: AlignBatch) -> dict[str, torch.Tensor]:
        assert isinstance(aligner, Direct)
        out = {"y2": aligner.text_to_latent(batch.text_aug), "yt": aligner.text_to_latent(batch.text)}
        if self.config.loss == "infonce":
            out["logit_scale"] = aligner.logit_scale()
        return out

    def aligner_loss(self, batch: AlignBatch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        terms = direct_cost(out["y2"], batch.latent, batch.video, batch.decode, c.lambda_feat, c.lambda_pixel)
        if c.lambda_zs > 0:
            text, video = out["yt"].flatten(1), batch.latent.flatten(1)  # [B, d_zv] each
            if c.loss == "bucket":
                terms["bucket"] = c.lambda_zs * bucket_loss(text, video, batch.bucket, c.alpha, c.lambda_neg,
                                                            c.lambda_pos)  # fmt: skip
            else:
                terms["infonce"] = c.lambda_zs * info_nce(text, video, out["logit_scale"])
        return terms


# --------------------------------------------------------------------------- vicreg


@dataclass
class VICRegConfig(SharedConfig):
    sim_coeff: float = 25.0  # VICReg's λ (invariance)
    std_coeff: float = 25.0  # μ (variance)
    cov_coeff: float = 1.0  # ν (covariance)
    gamma: float = 1.0  # the target standard deviation


class VICReg(SharedSpaceAligner):
    """Progressive + VICReg (4.2.3): the progressive networks, VICReg between M(t) and E_s(z_v)."""

    Config = VICRegConfig

    def __init__(self, config: VICRegConfig) -> None:
        super().__init__(config)
        for field in ("sim_coeff", "std_coeff", "cov_coeff", "gamma"):
            if getattr(config, field) < 0:
                raise ConfigError(f"vicreg: aligner.{field} must be ≥ 0, got {getattr(config, field)}")

    def objective(self) -> VICRegObjective:
        return VICRegObjective(self)


class VICRegObjective(SharedSpaceObjective):
    """Eq. 2 + λ_zs × (``vicreg_inv``, ``vicreg_var``, ``vicreg_cov``), each with VICReg's coefficient."""

    config: VICRegConfig

    def divergence(self, batch: AlignBatch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        invariance, variance, covariance = vicreg_terms(out["zt"], out["z1"], c.gamma)
        return {
            "vicreg_inv": c.sim_coeff * invariance,
            "vicreg_var": c.std_coeff * variance,
            "vicreg_cov": c.cov_coeff * covariance,
        }


# --------------------------------------------------------------------------- byol


@dataclass
class BYOLConfig(SharedConfig):
    momentum: float = 0.996  # EMA rate of the target networks (constant; see the module docstring)
    predictor_hidden: int = 512  # width of the predictors q_t, q_v


class Predictor(nn.Sequential):
    """BYOL's predictor q, ``[B, d_zs] → [B, d_zs]``: Linear → LayerNorm → SiLU → Linear (BYOL's two-layer
    shape, with the A.3.3 MLP's norm and activation in place of BatchNorm and ReLU)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))


class BYOL(SharedSpaceAligner):
    """Progressive + BYOL (4.2.3): the progressive networks, predictors q_t and q_v, and EMA targets M', E_s'."""

    Config = BYOLConfig

    def __init__(self, config: BYOLConfig) -> None:
        super().__init__(config)
        if not 0 <= config.momentum <= 1:
            raise ConfigError(f"byol: aligner.momentum must be in [0, 1], got {config.momentum}")
        if config.predictor_hidden < 1:
            raise ConfigError(f"byol: aligner.predictor_hidden must be ≥ 1, got {config.predictor_hidden}")
        self.predictor_text = Predictor(config.shared_dim, config.predictor_hidden)  # q_t
        self.predictor_video = Predictor(config.shared_dim, config.predictor_hidden)  # q_v
        # The targets start as copies of the online networks (BYOL) and only ever move by EMA.
        self.mapping_target = copy.deepcopy(self.mapping).requires_grad_(False)  # M'
        self.shared_encoder_target = copy.deepcopy(self.shared_encoder).requires_grad_(False)  # E_s'

    @torch.no_grad()
    def update_targets(self, momentum: float) -> None:
        """target ← momentum·target + (1 − momentum)·online, for M' and E_s' (parameters and buffers)."""
        for target, online in ((self.mapping_target, self.mapping), (self.shared_encoder_target, self.shared_encoder)):
            for t, o in zip(target.parameters(), online.parameters(), strict=True):
                t.lerp_(o, 1 - momentum)
            for t, o in zip(target.buffers(), online.buffers(), strict=True):
                t.copy_(o)

    def objective(self) -> BYOLObjective:
        return BYOLObjective(self)


class BYOLObjective(SharedSpaceObjective):
    """Eq. 2 + λ_zs × (``byol_text``, ``byol_video``); :meth:`after_step` moves the targets."""

    aligner: BYOL
    config: BYOLConfig

    def forward(self, aligner: Aligner, batch: AlignBatch) -> dict[str, torch.Tensor]:
        assert isinstance(aligner, BYOL)
        out = super().forward(aligner, batch)
        with torch.no_grad():  # sg(·): the targets take no gradient
            out["target_video"] = aligner.shared_encoder_target(batch.latent.flatten(1))  # E_s'(z_v) [B, d_zs]
            out["target_text"] = aligner.mapping_target(batch.text)  # M'(t) [B, d_zs]
        out["pred_text"] = aligner.predictor_text(out["zt"])  # q_t(M(t))
        out["pred_video"] = aligner.predictor_video(out["z1"])  # q_v(E_s(z_v))
        return out

    def divergence(self, batch: AlignBatch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            "byol_text": normalized_mse(out["pred_text"], out["target_video"]),
            "byol_video": normalized_mse(out["pred_video"], out["target_text"]),
        }

    def after_step(self) -> None:
        self.aligner.update_targets(self.config.momentum)


__all__ = [
    "BYOL",
    "BYOLConfig",
    "CLIPBased",
    "CoDiBased",
    "ContrastiveConfig",
    "Direct",
    "DirectConfig",
    "ImageBindBased",
    "VICReg",
    "VICRegConfig",
]
