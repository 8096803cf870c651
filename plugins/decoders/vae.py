"""vae: the wae3d backbone trained as a VAE, the paper's ablation (seed 000, A.4.1, Table A.3).

E's output layer gives (μ, logvar) instead of z; training samples z = μ + e^(logvar/2)·ε and adds a KL
term to the WAE objective (:class:`t2vkit.models.objectives.VAEObjective`). D_z and D_v stay per the
flags: the paper's "VAE" row keeps D_z, "VAE w/o D_z" is ``--set decoder.use_disc_z=false``.
``encode`` returns μ (deterministic), which is what the later stages align text to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from t2vkit.models.objectives import VAEObjective

from .wae3d import WAE3D, WAE3DConfig


@dataclass
class VAE3DConfig(WAE3DConfig):
    # KL weight; the paper does not give it. Our pixel term λ_pixel·mean|x − x̂| is a Laplace
    # likelihood of scale b summed over the N = C·T·H·W elements and scaled by λ_pixel·b/N, so the
    # ELBO's own KL weight would be λ_pixel·b/N ≈ 10·0.1/65536 ≈ 1.5e-5 for a 16×64×64 grey clip:
    # the prior would barely constrain the latent. At 1e-3 (β ≈ 65 in ELBO units) an informative
    # posterior (a few nats per dimension, a few hundred over d_z = 64) costs a few tenths, the order
    # of the pixel term of a good reconstruction (10·0.05): the prior really shapes the latent, which
    # is what the ablation compares, and the posterior is not forced to collapse.
    lambda_kl: float = 1e-3


class VAE3D(WAE3D):
    """wae3d with a (μ, logvar) head: ``encode_distribution(video) -> ([B, d_z], [B, d_z])``."""

    Config = VAE3DConfig

    def head_dim(self) -> int:
        return 2 * self.config.latent_dim

    def encode_distribution(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.features(video).chunk(2, dim=1)  # [B, d_z] each
        return mu, logvar.clamp(-30.0, 20.0)  # keeps e^logvar finite early in training

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """The posterior mean μ (deterministic)."""
        return self.encode_distribution(video)[0]

    def objective(self) -> VAEObjective:
        return VAEObjective(self.config, self.config.channels, self.latent_shape, self.config.lambda_kl)
