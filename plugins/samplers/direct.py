"""The direct sampler: text → aligner → video latent, one deterministic latent per text (M → G_s → z_v)."""

from __future__ import annotations

from typing import Any

import torch

from t2vkit.interfaces import Aligner, NoConfig, Sampler, TextEmbedding


class DirectSampler(Sampler):
    Config = NoConfig
    stage = "align"
    model_section = "aligner"

    @classmethod
    def build_model(cls, section: dict[str, Any]) -> Aligner:
        """The aligner a stage-2 run describes in its ``aligner`` section."""
        from t2vkit import registry
        from t2vkit.config import from_dict

        factory = registry.get("aligner", section["name"]).factory
        fields = {k: v for k, v in section.items() if k != "name"}
        return factory(from_dict(factory.Config, fields, where="run config aligner"))

    def __init__(self, config: NoConfig, model: Aligner) -> None:
        self.config, self.aligner = config, model

    @torch.no_grad()
    def sample(self, text: TextEmbedding, n: int = 1, seed: int | None = None) -> torch.Tensor:
        """``[B * n, *latent_shape]``; the mapping is deterministic, so the ``n`` copies are equal and
        ``seed`` changes nothing."""
        latents = self.aligner.text_to_latent(text.pooled)  # [B, *latent_shape]
        return latents.repeat_interleave(n, dim=0)
