"""What stages 2 and "diffusion" need from the text side, computed once before training: the text
encoder named by the request or the preset, and tables of the captions' embeddings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from t2vkit.config import to_dict
from t2vkit.errors import ConfigError
from t2vkit.interfaces import TextEmbedding, TextEncoder
from t2vkit.log import log


def build_encoder(request: Any, tables: dict[str, Any], sets: dict[str, Any]) -> tuple[TextEncoder, dict[str, Any]]:
    """The frozen text encoder (``--encoder``, else ``--set encoder.name``, else the preset's) and the
    run-config section recording it, with the identity of its weights."""
    from t2vkit import registry
    from t2vkit.training.config import plugin_config

    name = request.encoder or sets.get("encoder", {}).get("name") or tables.get("encoder", {}).get("name")
    if not name:
        raise ConfigError("no text encoder: pass --encoder NAME (minilm, clip, ...)")
    factory = registry.get("encoder", name).factory
    config = plugin_config(factory, "encoder", name, tables, sets)
    encoder = factory(config)
    log.info(f"embedding the captions with the {name} encoder (cached under $T2VKIT_CACHE)")
    return encoder, {"name": name, **to_dict(config), "identity": encoder.identity}


class TextTable:
    """Pooled embeddings of a data set's captions: clean ``[U, d]`` and noise-word variants ``[U, K, d]``."""

    def __init__(self, captions: list[str], clean: torch.Tensor, noisy: torch.Tensor) -> None:
        self.index = {c: i for i, c in enumerate(captions)}
        self.clean, self.noisy = clean, noisy

    def ids(self, captions: Iterable[str]) -> torch.Tensor:
        return torch.tensor([self.index[c] for c in captions], dtype=torch.long)

    def to(self, device: torch.device) -> TextTable:
        self.clean, self.noisy = self.clean.to(device), self.noisy.to(device)
        return self


def embed_captions(encoder: TextEncoder, captions: list[str], per_caption: int, seed: int) -> TextTable:
    """Embed each caption and ``per_caption`` noise-word variants of it (cached on disk)."""
    from t2vkit.text_augment import noise_dictionary, variants
    from t2vkit.text_cache import embed_texts

    clean = embed_texts(encoder, captions).pooled  # [U, d]
    if per_caption == 0:
        return TextTable(captions, clean, clean[:, None])
    noisy_texts = variants(captions, noise_dictionary(captions), per_caption, seed)
    flat = [v for c in captions for v in noisy_texts[c]]
    noisy = embed_texts(encoder, flat).pooled.view(len(captions), per_caption, -1)  # [U, K, d]
    return TextTable(captions, clean, noisy)


class TokenTable:
    """Token states of a data set's captions ``[U, L, d]`` with masks ``[U, L]``, and the empty caption's."""

    def __init__(self, captions: list[str], text: TextEmbedding, null: TextEmbedding) -> None:
        self.index = {c: i for i, c in enumerate(captions)}
        self.tokens, self.mask = text.tokens, text.mask
        self.null_tokens, self.null_mask = null.tokens[:1], null.mask[:1]

    def lookup(self, captions: Iterable[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.tensor([self.index[c] for c in captions])
        return self.tokens[ids].to(device), self.mask[ids].to(device)
