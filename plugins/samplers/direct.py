"""The direct sampler: text → aligner → video latent, one deterministic latent per text (M → G_s → z_v)."""

from __future__ import annotations

import torch

from t2vkit.interfaces import Aligner, NoConfig, Sampler, TextEmbedding


class DirectSampler(Sampler):
    Config = NoConfig
    stage = "align"

    def __init__(self, config: NoConfig, model: Aligner) -> None:
        self.config, self.aligner = config, model

    @torch.no_grad()
    def sample(self, text: TextEmbedding, n: int = 1, seed: int | None = None) -> torch.Tensor:
        """``[B * n, *latent_shape]``; the mapping is deterministic, so the ``n`` copies are equal and
        ``seed`` changes nothing."""
        latents = self.aligner.text_to_latent(text.pooled)  # [B, *latent_shape]
        return latents.repeat_interleave(n, dim=0)
