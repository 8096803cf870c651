"""clip: the text tower of OpenAI CLIP (``openai/clip-vit-base-patch32`` by default: 512-d, 77 tokens).

Pooled is ``pooler_output`` (the final state at the end-of-text token, as the paper's CLIPTextModel,
without CLIP's projection); tokens are ``last_hidden_state``. The weights come from a folder written by
``save_pretrained`` (``--set encoder.path=DIR``) or from the local Hugging Face cache; nothing is
downloaded unless ``allow_download`` is set.

Who has only OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` can build the tokenizer with
:func:`write_clip_vocab` and ``CLIPTokenizer.from_pretrained(DIR)``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from t2vkit.errors import DataError
from t2vkit.fsutil import atomic_write_text

from ._hf import HFTextEncoder, check_loading_info, quiet_transformers

VOCAB_SIZE = 49408
# OpenAI's SimpleTokenizer uses the first 49152 - 256 - 2 merges of the file (which lists more):
# 512 byte symbols + 48894 merges + 2 special tokens = 49408 ids.
NUM_MERGES = 49152 - 256 - 2


@dataclass
class CLIPConfig:
    model: str = "openai/clip-vit-base-patch32"  # a Hugging Face model id, looked up in the local cache
    path: Path | None = None  # a save_pretrained folder (CLIPTextModel or CLIPModel, + tokenizer); wins
    allow_download: bool = False  # fetch `model` from the Hugging Face Hub when it is not cached
    batch_size: int = 64


def bytes_to_unicode() -> dict[int, str]:
    """OpenAI CLIP's byte → printable character table (byte-level BPE works on these characters)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]  # '!'..'~', '¡'..'¬', '®'..'ÿ'
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


def write_clip_vocab(bpe_path: str | Path, out_dir: str | Path) -> Path:
    """Write CLIPTokenizer's ``vocab.json`` and ``merges.txt`` from OpenAI's ``bpe_simple_vocab_16e6.txt.gz``.

    The vocabulary is built as OpenAI's SimpleTokenizer builds it: the 256 byte symbols, the same
    with ``</w>``, the first 48894 merges joined, then ``<|startoftext|>`` and ``<|endoftext|>``
    (49408 ids). Returns ``out_dir``.
    """
    bpe_path, out_dir = Path(bpe_path), Path(out_dir)
    try:
        lines = gzip.decompress(bpe_path.read_bytes()).decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the CLIP BPE file {bpe_path}: {exc}") from None
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
    if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
        raise DataError(f"{bpe_path} is not OpenAI's bpe_simple_vocab_16e6.txt.gz (too few merges)")
    symbols = list(bytes_to_unicode().values())
    vocab = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges)]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    ids = {symbol: i for i, symbol in enumerate(vocab)}
    atomic_write_text(out_dir / "vocab.json", json.dumps(ids, ensure_ascii=False))
    atomic_write_text(out_dir / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return out_dir


def _tokenizer_class() -> Any:
    try:  # transformers 4.x: the tokenizers-backed class has its own name
        from transformers import CLIPTokenizerFast as tokenizer
    except ImportError:  # transformers 5: CLIPTokenizer is the tokenizers-backed one
        from transformers import CLIPTokenizer as tokenizer
    return tokenizer


class CLIP(HFTextEncoder):
    """CLIP's text transformer: pooled = the end-of-text state, tokens = every final state."""

    Config = CLIPConfig
    name = "clip"

    def __init__(self, config: CLIPConfig) -> None:
        from transformers import CLIPTextModel

        source = Path(config.path).expanduser() if config.path else config.model
        if isinstance(source, Path) and not source.is_dir():
            raise DataError(f"clip: encoder.path {source} is not a folder (one written by save_pretrained)")
        local_only = isinstance(source, Path) or not config.allow_download
        with quiet_transformers():
            try:
                model, info = CLIPTextModel.from_pretrained(
                    source, local_files_only=local_only, output_loading_info=True
                )
                tokenizer = _tokenizer_class().from_pretrained(source, local_files_only=local_only)
            except OSError as exc:
                raise DataError(_missing_message(config, source, exc)) from None
        check_loading_info(info, source, "CLIP text-encoder")
        if len(tokenizer) != model.config.vocab_size:
            # A folder without tokenizer files loads as an almost empty tokenizer instead of failing.
            raise DataError(
                f"clip: the tokenizer in {source} has {len(tokenizer)} tokens, the model expects "
                f"{model.config.vocab_size}; add vocab.json + merges.txt (see write_clip_vocab) to the folder"
            )
        folder = source if isinstance(source, Path) else _cached_folder(config.model)
        max_length = min(int(model.config.max_position_embeddings), int(tokenizer.model_max_length))
        super().__init__(tokenizer, model, folder, max_length, config.batch_size)

    def _forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out.pooler_output, out.last_hidden_state


def _cached_folder(model: str) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, local_files_only=True))


def _missing_message(config: CLIPConfig, source: Path | str, exc: OSError) -> str:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(source, Path):
        return f"clip: cannot load CLIP text-encoder weights from {source}: {reason}"
    if config.allow_download:
        return f"clip: cannot load or download {config.model}: {reason}"
    from huggingface_hub.constants import HF_HUB_CACHE

    return (
        f"clip: the weights of {config.model} are not in the Hugging Face cache ({HF_HUB_CACHE}); "
        f"download them once with `hf download {config.model}` (`huggingface-cli download` on older "
        f"huggingface_hub) or --set encoder.allow_download=true, or point to a save_pretrained folder "
        f"with --set encoder.path=DIR"
    )
