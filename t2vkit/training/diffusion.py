"""Stage "diffusion": train a sampler's denoiser in a stage-1 run's latent (spatial for the diffusion
sampler, a vector for the prior), or in pixel space without ``--video`` (the identity ``pixel``
decoder; the paper's VDM baseline).

As in stage 2, what stays fixed is computed once: the captions' token states (cached on disk),
the empty caption's (for classifier-free guidance), and every clip's latent. The latents are
scaled to unit standard deviation over the training split (latent diffusion's usual scale factor);
pixel clips, already in [-1, 1], are left as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2vkit.checkpoint import component_path, save_component
from t2vkit.config import to_dict
from t2vkit.data.store import PreparedDataset
from t2vkit.data.torch_dataset import ClipDataset, tensor_to_clip
from t2vkit.errors import ConfigError
from t2vkit.fsutil import atomic_write_bytes, sha256_file
from t2vkit.interfaces import DenoiserBatch, TextEmbedding
from t2vkit.training.align import check_stage1, encode_latents
from t2vkit.training.engine import Task, Update
from t2vkit.training.text import TokenTable, build_encoder


class DiffusionTask(Task):
    exports = ("denoiser",)
    best_metric = "mse"
    best_higher = False

    def __init__(self, model: torch.nn.Module, sampler_factory: Any, decoder: Any, text: TokenTable,
                 latents: torch.Tensor, scale: float, ema_decay: float, data: PreparedDataset) -> None:  # fmt: skip
        self.model, self.objective = model, model.objective()
        self.ema = copy.deepcopy(model).requires_grad_(False)
        self.sampler_factory, self.decoder, self.text = sampler_factory, decoder.eval(), text
        self.latents, self.scale, self.ema_decay, self.data = latents, scale, ema_decay, data
        self.modules = {"denoiser": model, "denoiser_ema": self.ema}

    def optimized(self) -> dict[str, list[torch.nn.Module]]:
        return {"denoiser": [self.model]}

    def exported(self) -> dict[str, torch.nn.Module]:
        return {"denoiser": self.ema}  # generation samples with the EMA weights

    def _batch(self, batch: dict[str, Any]) -> DenoiserBatch:
        device = batch["index"].device
        tokens, mask = self.text.lookup(batch["caption"], device)
        return DenoiserBatch(
            latent=self.latents[batch["index"].cpu()].to(device) * self.scale, tokens=tokens, mask=mask,
            null_tokens=self.text.null_tokens.to(device), null_mask=self.text.null_mask.to(device),
        )  # fmt: skip

    def train_step(self, batch: dict[str, Any], update: Update) -> dict[str, float]:
        return update("denoiser", self.objective.loss(self.model, self._batch(batch)))

    @torch.no_grad()
    def after_update(self) -> None:
        for ema, live in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            ema.lerp_(live.detach(), 1.0 - self.ema_decay)
        for ema, live in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            ema.copy_(live)

    @torch.no_grad()
    def validate(self, batches: Iterable[dict[str, Any]]) -> dict[str, float]:
        """The EMA denoiser's training loss on validation clips, at seeded timesteps and noise."""
        state = torch.random.get_rng_state()
        torch.manual_seed(0)  # the same timesteps and noise at every validation
        total, count = 0.0, 0
        try:
            for batch in batches:
                n = len(batch["caption"])
                total += float(self.objective.loss(self.ema, self._batch(batch))["mse"]) * n
                count += n
        finally:
            torch.random.set_rng_state(state)
        return {"mse": total / max(count, 1)}

    @torch.no_grad()
    def samples(self, batch: dict[str, Any]) -> tuple[list[np.ndarray], int]:
        """Up to four validation captions: a sampled video beside a real clip of the caption."""
        captions = list(dict.fromkeys(batch["caption"]))[:4]
        device = batch["index"].device
        tokens, mask = self.text.lookup(captions, device)
        text = TextEmbedding(pooled=tokens.mean(1), tokens=tokens, mask=mask)
        sampler = self.sampler_factory(self.sampler_factory.Config(), self.ema)
        latents = sampler.sample(text, n=1, seed=0)
        videos = tensor_to_clip(self.decoder.to(device).decode(latents.to(device)).clamp(-1, 1))
        rows = []
        for caption, video in zip(captions, videos, strict=True):
            real = int(batch["index"][list(batch["caption"]).index(caption)])
            rows += [video, np.asarray(self.data.clips[real])]
        return rows, 2


def _decoder(request: Any, data: PreparedDataset, device: torch.device) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The frozen decoder (stage-1 run, or pixel space), its config section, and provenance."""
    from t2vkit import registry
    from t2vkit.runs import load_decoder

    frames, height, width, channels = data.clip_shape
    if request.video is None:
        if height != width:
            raise ConfigError(f"the data set's clips are {height}×{width}; pixel-space diffusion takes square frames")
        factory = registry.get("decoder", "pixel").factory
        section = {"name": "pixel", "channels": channels, "frames": frames, "size": height}
        return factory(factory.Config(channels, frames, height)), section, {}
    decoder, stage1 = load_decoder(request.video, device)
    check_stage1(stage1, data, request.video)
    run = {"path": str(request.video), "decoder_sha256": sha256_file(component_path(request.video, "decoder"))}
    return decoder, stage1["decoder"], run


def build(request: Any, data: PreparedDataset, tables: dict[str, Any], sets: dict[str, Any], train_cfg: Any,
          device: torch.device) -> tuple[DiffusionTask, dict[str, Any]]:  # fmt: skip
    from t2vkit import registry
    from t2vkit.text_cache import embed_texts
    from t2vkit.training.config import plugin_config

    name = request.sampler or "diffusion"
    factory = registry.get("sampler", name).factory
    if getattr(factory, "stage", None) != "diffusion" or not hasattr(factory, "Model"):
        raise ConfigError(f"sampler {name!r} has no network to train with --stage diffusion")
    decoder, decoder_section, video_run = _decoder(request, data, device)
    source = f"--video {request.video}" if request.video is not None else "pixel space (no --video)"
    shape_fields = factory.Model.shape_fields(tuple(decoder.latent_shape), source)

    encoder, encoder_section = build_encoder(request, tables, sets)
    captions = data.unique_captions()
    text = TokenTable(captions, embed_texts(encoder, captions, tokens=True), encoder.encode([""]))

    train_idx, val_idx = data.indices("train"), data.indices("val")
    latents = torch.zeros(len(data), *decoder.latent_shape)
    for indices in (train_idx, val_idx):
        if len(indices):
            latents[torch.from_numpy(indices)] = encode_latents(decoder, data, indices, device)
    scale = 1.0 if decoder_section["name"] == "pixel" else float(1.0 / latents[torch.from_numpy(train_idx)].std())

    config = plugin_config(factory.Model, "denoiser", name, tables, sets,
                           fixed={**shape_fields, "text_dim": encoder.dim, "latent_scale": scale})
    torch.manual_seed(train_cfg.seed)
    model = factory.Model(config)
    model.set_null_text(text.null_tokens, text.null_mask)
    task = DiffusionTask(model, factory, decoder, text, latents, scale, train_cfg.ema_decay, data)
    sections = {
        **({"video_run": video_run} if video_run else {}),
        "decoder": decoder_section,
        "encoder": encoder_section,
        "denoiser": {"name": name, **to_dict(config)},
    }
    return task, sections


def after_config(request: Any, out: Path) -> None:
    """Carry the decoder G (byte for byte; an empty file for pixel space) so generation needs only this run."""
    if request.video is not None:
        atomic_write_bytes(component_path(out, "decoder"), component_path(request.video, "decoder").read_bytes())
    else:
        from t2vkit import registry

        pixel = registry.get("decoder", "pixel").factory
        save_component(out, "decoder", pixel(pixel.Config()))  # no tensors, but the file every run has


def datasets(data: PreparedDataset) -> tuple[ClipDataset, ClipDataset | None]:
    """Captions and indices only: every clip's latent is already in the task's table."""
    val = ClipDataset(data, "val", with_video=False)
    return ClipDataset(data, "train", with_video=False), (val if len(val) else None)

