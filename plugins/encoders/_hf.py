"""What the transformers-based encoders share: freezing, batching, truncation, identity, quiet loading."""

from __future__ import annotations

import contextlib
import hashlib
import re
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from t2vkit.errors import DataError
from t2vkit.fsutil import sha256_file
from t2vkit.interfaces import TextEmbedding, TextEncoder
from t2vkit.log import log

# Files besides the weights whose content changes what an encoder returns.
_SETTINGS_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentence_bert_config.json",
    "modules.json",
    "1_Pooling/config.json",
)
# The Hugging Face cache names each blob after its content hash (sha256 for LFS files, git's sha1 otherwise).
_CONTENT_ADDRESSED = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def folder_digest(folder: Path) -> str:
    """sha256 over a model folder's weight files and tokenizer/config files (weights: safetensors first)."""
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    files = weights + [folder / name for name in _SETTINGS_FILES if (folder / name).is_file()]
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{_file_hash(path)}\n".encode())
    return digest.hexdigest()


def _file_hash(path: Path) -> str:
    real = path.resolve()
    if real.parent.name == "blobs" and _CONTENT_ADDRESSED.fullmatch(real.name):
        return real.name  # already a content hash: no need to read 600 MB again
    return sha256_file(real)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' info logs and "Loading weights" progress bars (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def check_loading_info(info: Mapping[str, Any], where: Path | str, what: str) -> None:
    """Refuse weights that leave part of the model randomly initialised (transformers only warns)."""
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.endswith("position_ids"))
    mismatched = sorted(info.get("mismatched_keys", ()))
    if missing or mismatched:
        bad = missing or [str(m) for m in mismatched]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"{where} does not hold {what} weights: {bad[0]} is missing or mis-shaped{more}")


class HFTextEncoder(torch.nn.Module, TextEncoder):
    """A frozen transformers text model behind the :class:`TextEncoder` contract.

    Subclasses load ``tokenizer`` and ``model`` and implement :meth:`_forward`. Texts are sorted by
    length and run in batches of ``batch_size``; token states are right-padded with zeros to the
    longest text of the call, so padding never depends on how the batches fell.
    """

    name: str  # the registered name, used in identity and messages

    def __init__(
        self, tokenizer: Any, model: torch.nn.Module, folder: Path, max_length: int, batch_size: int
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise DataError(f"encoder {self.name}: batch_size must be at least 1, got {batch_size}")
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.folder = folder
        self.dim = int(model.config.hidden_size)
        self.max_length = max_length
        self.batch_size = batch_size

    def train(self, mode: bool = True) -> HFTextEncoder:
        """Stay in eval mode whatever a parent module asks: the encoder is frozen (no dropout)."""
        return super().train(False)

    @cached_property
    def identity(self) -> str:
        return f"{self.name}-{folder_digest(self.folder)[:16]}"

    @abstractmethod
    def _forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled [b, d], token states [b, l, d]) for one tokenized, padded batch."""

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> TextEmbedding:
        # no_grad rather than inference_mode: the outputs feed modules that are being trained.
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not a single string")
        texts = list(texts)
        lengths = [len(ids) for ids in self.tokenizer(texts, verbose=False)["input_ids"]] if texts else []
        cut = sum(n > self.max_length for n in lengths)
        if cut:
            log.warning(
                f"{cut} of {len(texts)} text(s) exceed the {self.name} encoder's limit of "
                f"{self.max_length} tokens and were truncated"
            )
        param = next(self.model.parameters())
        width = min(max(lengths, default=0), self.max_length)
        pooled = torch.zeros(len(texts), self.dim, dtype=param.dtype, device=param.device)
        tokens = torch.zeros(len(texts), width, self.dim, dtype=param.dtype, device=param.device)
        mask = torch.zeros(len(texts), width, dtype=torch.bool, device=param.device)
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # similar lengths share a batch
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(param.device)
            real = batch["attention_mask"].bool()
            batch_pooled, states = self._forward(batch)
            index = torch.tensor(rows, device=param.device)
            pooled[index] = batch_pooled
            tokens[index, : real.shape[1]] = states * real[..., None]
            mask[index, : real.shape[1]] = real
        return TextEmbedding(pooled=pooled, tokens=tokens, mask=mask)
