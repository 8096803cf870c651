"""A PyTorch ``Dataset`` over a prepared folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from t2vkit.data.store import PreparedDataset


def clip_to_tensor(clip: np.ndarray, value_range: Literal["signed", "unit"] = "signed") -> torch.Tensor:
    """uint8 ``[T, H, W, C]`` → float ``[C, T, H, W]`` in [-1, 1] ("signed") or [0, 1] ("unit")."""
    video = torch.from_numpy(np.array(clip, copy=True)).permute(3, 0, 1, 2).float().div_(255.0)  # memmaps are read-only
    return video.mul_(2.0).sub_(1.0) if value_range == "signed" else video


def tensor_to_clip(video: torch.Tensor, value_range: Literal["signed", "unit"] = "signed") -> np.ndarray:
    """Float ``[C, T, H, W]`` (or ``[B, C, T, H, W]``) → uint8 ``[(B,) T, H, W, C]``, rounded and clipped."""
    x = video.detach().float().cpu()
    if value_range == "signed":
        x = (x + 1.0) / 2.0
    x = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return x.movedim(-4, -1).numpy()


class ClipDataset(torch.utils.data.Dataset):
    """Clips of one split. Each item is a dict:

    ``video`` float ``[C, T, H, W]`` (in [-1, 1] by default, the range the video models use),
    ``caption`` str, ``bucket`` int, ``index`` int, and ``text`` (the caption's embedding) when a
    caption → tensor mapping is given. ``with_video=False`` leaves ``video`` out, for a stage that
    looks its clips' latents up by ``index`` (reading a clip costs more than the step that uses it).
    """

    def __init__(
        self,
        data: PreparedDataset | str | Path,
        split: str | None = None,
        value_range: Literal["signed", "unit"] = "signed",
        text: Mapping[str, torch.Tensor] | None = None,
        with_video: bool = True,
    ) -> None:
        self.data = data if isinstance(data, PreparedDataset) else PreparedDataset(data)
        self.split = split
        self.indices = self.data.indices(split)
        self.value_range = value_range
        self.text = text
        self.with_video = with_video

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = int(self.indices[i])
        record = self.data.records[index]
        item: dict[str, Any] = {"caption": record.caption, "bucket": record.bucket, "index": index}
        if self.with_video:
            item["video"] = clip_to_tensor(self.data.clips[index], self.value_range)
        if self.text is not None:
            item["text"] = self.text[record.caption]
        return item
