"""hashing: a weight-free, deterministic text encoder (feature hashing + a seeded random projection).

Each word becomes a small bag of hashed features — the word itself, its character trigrams and
the bigram with the word before it — summed through a fixed Gaussian matrix drawn from ``seed``.
Nothing is downloaded or trained, and the same text and config give the same vectors on every
machine. Texts that share words get close vectors and unrelated texts nearly orthogonal ones,
which is all a synthetic data set with templated captions ("a red square is moving left and
right") needs; it knows no synonyms, so it is a stand-in for tests and toy data, not for CLIP.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from t2vkit.errors import ConfigError
from t2vkit.interfaces import TextEmbedding, TextEncoder
from t2vkit.log import log

VERSION = "1"  # part of `identity`, which keys embedding caches: bump when the features change
WORD = re.compile(r"[a-z0-9]+")
EMPTY = "\x00empty"  # the one token of a text without words; no text can spell it


@dataclass
class HashingConfig:
    dim: int = 64
    seed: int = 0  # draws the projection matrix
    max_length: int = 32  # words; longer texts are truncated with a warning
    features: int = 4096  # size of the hashed feature space


@functools.lru_cache(maxsize=1 << 16)
def _hash(key: str) -> int:
    """A 64-bit hash that, unlike ``hash()``, is the same in every process."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def _features(words: Sequence[str], i: int) -> list[int]:
    """Hashes of word ``i``'s features: the word, its character trigrams, the bigram before it."""
    word = words[i]
    padded = f"<{word}>"
    keys = [f"w:{word}", *(f"c:{padded[j : j + 3]}" for j in range(len(padded) - 2))]
    if i:
        keys.append(f"b:{words[i - 1]} {word}")
    return [_hash(k) for k in keys]


def tokenize(text: str) -> list[str]:
    """Lower-cased words (letters and digits); punctuation and spacing do not matter."""
    return WORD.findall(text.lower())


class HashingEncoder(torch.nn.Module, TextEncoder):
    Config = HashingConfig

    def __init__(self, config: HashingConfig) -> None:
        super().__init__()
        if min(config.dim, config.max_length, config.features) < 1:
            raise ConfigError("hashing: dim, max_length and features must be >= 1")
        self.config = config
        self.dim = config.dim
        self.max_length = config.max_length
        generator = torch.Generator().manual_seed(config.seed)
        # Derived from the seed, so not worth saving with a checkpoint.
        projection = torch.randn(config.features, config.dim, generator=generator)
        self.register_buffer("projection", projection, persistent=False)
        self.eval()

    @property
    def identity(self) -> str:
        options = " ".join(f"{k}={v}" for k, v in sorted(dataclasses.asdict(self.config).items()))
        return f"hashing v{VERSION} {options}"

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> TextEmbedding:
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, not a single string")
        device = self.projection.device
        if not texts:
            empty = torch.zeros(0, self.dim, device=device)
            return TextEmbedding(empty, empty[:, None], torch.zeros(0, 1, dtype=torch.bool, device=device))

        words = [tokenize(text) for text in texts]
        truncated = sum(len(w) > self.max_length for w in words)
        if truncated:
            log.warning("hashing: %d of %d texts are longer than %d words and were truncated",
                        truncated, len(texts), self.max_length)  # fmt: skip
        words = [w[: self.max_length] or [EMPTY] for w in words]

        # One bag of signed feature rows per word, summed by embedding_bag.
        index: list[int] = []
        sign: list[float] = []
        offsets: list[int] = []
        for text_words in words:
            for i in range(len(text_words)):
                offsets.append(len(index))
                for h in _features(text_words, i):
                    index.append(h % self.config.features)
                    sign.append(-1.0 if h >> 63 else 1.0)
        states = F.embedding_bag(
            torch.tensor(index, device=device), self.projection, torch.tensor(offsets, device=device),
            mode="sum", per_sample_weights=torch.tensor(sign, device=device, dtype=self.projection.dtype),
        )  # fmt: skip

        lengths = torch.tensor([len(w) for w in words], device=device)
        mask = torch.arange(int(lengths.max()), device=device)[None, :] < lengths[:, None]
        tokens = states.new_zeros(len(words), mask.shape[1], self.dim)
        tokens[mask] = F.normalize(states, dim=-1)  # row-major order of `mask` = order of `states`
        pooled = F.normalize(tokens.sum(dim=1), dim=-1)
        return TextEmbedding(pooled=pooled, tokens=tokens, mask=mask)
