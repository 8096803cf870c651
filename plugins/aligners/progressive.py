"""progressive: the paper's method, progressive decoupling (seed 000, Section 3, Eq. 1–4, A.3.3).

Text reaches the video latent in two steps, z_t → M → shared code → G_s → z_v, and the clip's own
shared code E_s(z_v) anchors the shared space (networks: :mod:`.networks`). The loss is Eq. 1:
the cost of Eq. 2 plus λ_zs times the divergence of Eq. 3, D_s = L_{D_z^s} + L_bucket. The terms,
as the engine logs them (all weighted; z1 = E_s(z_v), z2 = M(t̂) for the augmented caption t̂,
zt = M(t) for the clean one):

- Eq. 2 (:func:`t2vkit.models.alignment.decoupling_cost`): ``shared``, ``feat_pair``, ``feat_video``,
  ``feat_text``, ``pixel_video``, ``pixel_text``.
- ``bucket``  λ_zs·L_bucket(zt, z1), Eq. 4 as printed (:func:`t2vkit.models.alignment.bucket_loss`),
  on the clean caption's code (A.3.3: "having the bucket loss considering the original text
  embeddings"). Its gradient reaches both M and E_s: Eq. 1 takes the infimum over both encoders.
- ``adv_s``   λ_zs times M's side of L_{D_z^s}: the generator's non-saturating loss −log σ(D_s(z2)).
  Reading: Section 3 defines L_{D_z^s} only as "similarly to Equation A.5" between z1 and z2, and,
  unlike A.2 (which removes the min-max between the autoencoder and D_z explicitly and replaces it by
  feature matching), says nothing about removing the min-max here. So D_s keeps its min-max: D_s
  learns to tell z1 from z2 (A.5's loss, below), and M learns to fool it. D_s is called with
  detached parameters, so this term trains M only; E_s is not pushed towards being told apart.
- ``disc_s`` (auxiliary, D_s's own optimizer, unweighted): Eq. A.5 on the shared space,
  −log σ(D_s(z1)) − log(1 − σ(D_s(z2))), real = the clip's code z1, fake = the caption's code z2,
  both detached.

D_s is stage 1's :class:`~t2vkit.models.discriminators.LatentDiscriminator` on the shared space:
133k parameters at d_zs = 64 with hidden widths (240, 240, 240) (Table A.2: "D_s or D_z, 133K").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from t2vkit.errors import ConfigError
from t2vkit.interfaces import AlignBatch
from t2vkit.models.alignment import bucket_loss
from t2vkit.models.discriminators import LatentDiscriminator
from t2vkit.models.objectives import discriminator_loss, frozen_call, generator_loss

from .networks import SharedConfig, SharedSpaceAligner, SharedSpaceObjective


@dataclass
class ProgressiveConfig(SharedConfig):
    """The paper's A.3.3 values; ``text_dim`` and ``latent_shape`` are filled by t2vkit."""

    lambda_neg: float = 1.0  # λ_neg, Eq. 4's inter-bucket term
    lambda_pos: float = 1.0  # λ_pos, Eq. 4's intra-bucket term
    alpha: float = 2.0  # α, the weight of the direct text-video pair in Eq. 4
    disc_s_hidden: tuple[int, ...] = (240, 240, 240)  # D_s hidden widths: 133k parameters at d_zs = 64


def check_bucket_weights(config: ProgressiveConfig, name: str) -> None:
    if config.alpha < 0:
        raise ConfigError(f"{name}: aligner.alpha must be ≥ 0, got {config.alpha}")


class Progressive(SharedSpaceAligner):
    """The paper's aligner: M and the video shared autoencoder (E_s, G_s), trained with D_s + bucket loss."""

    Config = ProgressiveConfig

    def __init__(self, config: ProgressiveConfig) -> None:
        super().__init__(config)
        check_bucket_weights(config, "progressive")
        if not config.disc_s_hidden or min(config.disc_s_hidden) < 1:
            raise ConfigError(f"progressive: aligner.disc_s_hidden needs positive widths, got {config.disc_s_hidden}")

    def objective(self) -> ProgressiveObjective:
        return ProgressiveObjective(self)


class ProgressiveObjective(SharedSpaceObjective):
    """Eq. 1 with the divergence of Eq. 3 (module docstring): terms ``bucket``, ``adv_s``; auxiliary ``disc_s``."""

    config: ProgressiveConfig

    def __init__(self, aligner: Progressive) -> None:
        super().__init__(aligner)
        self.disc_s = LatentDiscriminator(self.config.shared_dim, self.config.disc_s_hidden)

    def auxiliaries(self) -> dict[str, torch.nn.Module]:
        return {"disc_s": self.disc_s}

    def divergence(self, batch: AlignBatch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        fake_logits, _ = frozen_call(self.disc_s, out["z2"])  # [B]; gradients reach z2 (M) only
        return {
            "bucket": bucket_loss(out["zt"], out["z1"], batch.bucket, c.alpha, c.lambda_neg, c.lambda_pos),
            "adv_s": generator_loss(fake_logits),
        }

    def auxiliary_loss(self, batch: AlignBatch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        real, _ = self.disc_s(out["z1"].detach())
        fake, _ = self.disc_s(out["z2"].detach())
        return {"disc_s": discriminator_loss(real, fake)}


__all__ = ["Progressive", "ProgressiveConfig", "ProgressiveObjective"]
