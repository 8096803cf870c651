"""Stage 1: train a video autoencoder (a decoder plugin) with the objective it brings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from t2vkit.config import to_dict
from t2vkit.data.store import PreparedDataset
from t2vkit.data.torch_dataset import ClipDataset, tensor_to_clip
from t2vkit.errors import ConfigError
from t2vkit.interfaces import VideoAutoencoder, VideoObjective
from t2vkit.metrics.quality import psnr, ssim
from t2vkit.training.engine import Task, Update, frozen


class VideoTask(Task):
    exports = ("decoder",)
    best_metric = "psnr"

    def __init__(self, model: VideoAutoencoder, objective: VideoObjective) -> None:
        self.model, self.objective = model, objective
        self.auxiliaries = objective.auxiliaries()
        self.modules = {"decoder": model, **self.auxiliaries}  # type: ignore[dict-item]

    def optimized(self) -> dict[str, list[torch.nn.Module]]:
        groups = {"autoencoder": [self.model]}
        if self.auxiliaries:
            groups["auxiliary"] = list(self.auxiliaries.values())
        return groups  # type: ignore[return-value]

    def train_step(self, batch: dict[str, Any], update: Update) -> dict[str, float]:
        video = batch["video"]
        out = self.objective.forward(self.model, video)
        logged: dict[str, float] = {}
        if self.auxiliaries:
            detached = {k: v.detach() for k, v in out.items()}
            logged |= update("auxiliary", self.objective.auxiliary_loss(video, detached))
        with frozen(self.auxiliaries.values()):
            logged |= update("autoencoder", self.objective.autoencoder_loss(video, out))
        return logged

    @torch.no_grad()
    def validate(self, batches: Iterable[dict[str, Any]]) -> dict[str, float]:
        scores: dict[str, list[torch.Tensor]] = {"psnr": [], "ssim": []}
        for batch in batches:
            video = batch["video"]
            recon = self.model.decode(self.model.encode(video)).clamp(-1, 1)
            scores["psnr"].append(psnr(recon, video))
            scores["ssim"].append(ssim(recon, video))
        out = {}
        for key, values in scores.items():
            flat = torch.cat(values)
            out[key], out[f"{key}_std"] = float(flat.mean()), float(flat.std(unbiased=False))
        return out

    @torch.no_grad()
    def samples(self, batch: dict[str, Any]) -> tuple[list[np.ndarray], int]:
        """Up to four validation clips, each beside its reconstruction."""
        video = batch["video"][:4]
        recon = self.model.decode(self.model.encode(video)).clamp(-1, 1)
        pairs = []
        for original, rebuilt in zip(tensor_to_clip(video), tensor_to_clip(recon), strict=True):
            pairs += [original, rebuilt]
        return pairs, 2

    def notes(self) -> list[str]:
        return list(getattr(self.objective, "notes", []))


def build(request: Any, data: PreparedDataset, tables: dict[str, Any], sets: dict[str, Any], train_cfg: Any,
          device: torch.device) -> tuple[VideoTask, dict[str, Any]]:  # fmt: skip
    """The stage-1 task for the requested decoder and its resolved config section."""
    from t2vkit import registry
    from t2vkit.training.config import plugin_config

    name = request.decoder
    if not name:
        known = ", ".join(registry.get_registry().names("decoder"))
        raise ConfigError(f"--stage video needs --decoder NAME (available: {known})")
    factory = registry.get("decoder", name).factory
    frames, height, width, channels = data.clip_shape
    if height != width:
        raise ConfigError(f"the data set's clips are {height}×{width}; the video autoencoders take square frames")
    config = plugin_config(factory, "decoder", name, tables, sets,
                           fixed={"channels": channels, "frames": frames, "size": height})  # fmt: skip
    torch.manual_seed(train_cfg.seed)  # the same seed builds the same initial weights
    model = factory(config)
    task = VideoTask(model, model.objective())
    return task, {"decoder": {"name": name, **to_dict(config)}}


def after_config(request: Any, out: Any) -> None:
    """Nothing to add to a stage-1 run directory before training."""


def datasets(data: PreparedDataset) -> tuple[ClipDataset, ClipDataset | None]:
    val = ClipDataset(data, "val")
    return ClipDataset(data, "train"), (val if len(val) else None)
