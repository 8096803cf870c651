"""Prompt checks shared by every generation backend; torch-free, so the ONNX runtime can use them."""

from __future__ import annotations

from collections.abc import Sequence

from t2vkit.errors import T2VError


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """Strip prompts and refuse empty ones (one clear error naming which)."""
    cleaned = [p.strip() for p in prompts]
    if not cleaned:
        raise T2VError("no prompt given")
    for number, prompt in enumerate(cleaned, 1):
        if not prompt:
            where = "the prompt" if len(cleaned) == 1 else f"prompt {number}"
            raise T2VError(f"{where} is empty; describe the video, e.g. \"digit 3 is moving up and down\"")
    return cleaned
