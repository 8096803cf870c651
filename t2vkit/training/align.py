"""Stage 2: align text with the frozen stage-1 video latent space (an aligner plugin).

Before the first step, everything that stays fixed is computed once: the captions' embeddings
(clean, and ``noise_variants`` noise-word versions of each, through the on-disk cache) and every
clip's stage-1 latent z_v. Training then never runs the text encoder or E_v; it runs the aligner,
its objective, and the frozen decoder G for the pixel terms of Eq. 2.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2vkit.checkpoint import component_path
from t2vkit.config import to_dict
from t2vkit.data.store import PreparedDataset
from t2vkit.data.torch_dataset import ClipDataset, clip_to_tensor, tensor_to_clip
from t2vkit.errors import ConfigError
from t2vkit.fsutil import atomic_write_bytes, sha256_file
from t2vkit.interfaces import AlignBatch, Aligner, AlignObjective
from t2vkit.log import log
from t2vkit.metrics.bucket import best_matches, weighted_summary
from t2vkit.training.engine import Task, Update, frozen
from t2vkit.training.text import TextTable, build_encoder, embed_captions


@torch.no_grad()
def encode_latents(decoder: Any, data: PreparedDataset, indices: np.ndarray, device: torch.device,
                   batch_size: int = 64) -> torch.Tensor:  # fmt: skip
    """z_v = E_v(clip) for the given clips, ``[N, *latent_shape]`` on the CPU."""
    out = []
    for start in range(0, len(indices), batch_size):
        clips = [clip_to_tensor(data.clips[i]) for i in indices[start : start + batch_size]]
        out.append(decoder.encode(torch.stack(clips).to(device)).float().cpu())
    return torch.cat(out)


class AlignTask(Task):
    exports = ("aligner",)
    best_metric = "b_psnr"

    def __init__(self, aligner: Aligner, objective: AlignObjective, decoder: Any, text: TextTable,
                 latents: torch.Tensor, noise_word_p: float, val_index: dict[int, list[int]],
                 data: PreparedDataset) -> None:  # fmt: skip
        self.bucket_of = {r.caption: r.bucket for r in data.records}
        self.aligner, self.objective, self.decoder = aligner, objective, decoder.requires_grad_(False).eval()
        self.text, self.latents, self.noise_word_p = text, latents, noise_word_p
        self.val_index, self.data = val_index, data
        self.auxiliaries = objective.auxiliaries()
        self.modules = {"aligner": aligner, **self.auxiliaries}  # type: ignore[dict-item]

    def optimized(self) -> dict[str, list[torch.nn.Module]]:
        groups = {"aligner": [self.aligner]}
        if self.auxiliaries:
            groups["auxiliary"] = list(self.auxiliaries.values())
        return groups  # type: ignore[return-value]

    def _batch(self, batch: dict[str, Any]) -> AlignBatch:
        device = batch["video"].device
        self.decoder.to(device).eval()  # frozen: BatchNorm keeps its stage-1 statistics
        self.text.to(device)
        ids = self.text.ids(batch["caption"]).to(device)
        clean = self.text.clean[ids]  # [B, d_t]
        pick = torch.randint(self.text.noisy.shape[1], (len(ids),), device=device)
        noisy = self.text.noisy[ids, pick]
        use = (torch.rand(len(ids), device=device) < self.noise_word_p)[:, None]
        return AlignBatch(
            text=clean, text_aug=torch.where(use, noisy, clean), latent=self.latents[batch["index"].cpu()].to(device),
            video=batch["video"], bucket=batch["bucket"], decode=self.decoder.decode,
        )  # fmt: skip

    def train_step(self, batch: dict[str, Any], update: Update) -> dict[str, float]:
        data = self._batch(batch)
        out = self.objective.forward(self.aligner, data)
        logged: dict[str, float] = {}
        if self.auxiliaries:
            detached = {k: v.detach() for k, v in out.items()}
            logged |= update("auxiliary", self.objective.auxiliary_loss(data, detached))
        with frozen(self.auxiliaries.values()):
            logged |= update("aligner", self.objective.aligner_loss(data, out))
        self.objective.after_step()
        return logged

    @torch.no_grad()
    def generate(self, captions: list[str], device: torch.device) -> torch.Tensor:
        """The direct sampler's videos for ``captions``, ``[N, C, T, H, W]`` in [-1, 1]."""
        self.text.to(device)
        latents = self.aligner.text_to_latent(self.text.clean[self.text.ids(captions).to(device)])
        return self.decoder.to(device).decode(latents).clamp(-1, 1)

    @torch.no_grad()
    def validate(self, batches: Iterable[dict[str, Any]]) -> dict[str, float]:
        """Bucket metrics on the validation clips: one video per caption, scored against every
        validation clip of its bucket, best match kept; averaged over the clips' captions."""
        counts: dict[str, int] = defaultdict(int)
        device = torch.device("cpu")
        for batch in batches:
            device = batch["video"].device
            for caption in batch["caption"]:
                counts[caption] += 1
        captions = sorted(counts)
        generated = self.generate(captions, device)
        scores: dict[str, list[torch.Tensor]] = {"b_psnr": [], "b_ssim": []}
        for caption, video in zip(captions, generated, strict=True):
            refs = torch.stack([clip_to_tensor(self.data.clips[i]) for i in self.val_index[self.bucket_of[caption]]])
            for key, value in best_matches(video[None], refs.to(device)).items():
                scores[key].append(value)
        weights = torch.tensor([counts[c] for c in captions])
        out = {}
        for key, values in scores.items():
            out[key], out[f"{key}_std"] = weighted_summary(torch.cat(values).cpu(), weights)
        return out

    @torch.no_grad()
    def samples(self, batch: dict[str, Any]) -> tuple[list[np.ndarray], int]:
        """Up to four validation captions: the generated video beside a real clip of its bucket."""
        captions = list(dict.fromkeys(batch["caption"]))[:4]
        generated = tensor_to_clip(self.generate(captions, batch["video"].device))
        rows = []
        for caption, video in zip(captions, generated, strict=True):
            real = batch["video"][list(batch["caption"]).index(caption)]
            rows += [video, tensor_to_clip(real)]
        return rows, 2

    def notes(self) -> list[str]:
        return list(getattr(self.objective, "notes", []))


def check_stage1(stage1: dict[str, Any], data: PreparedDataset, video_run: Path) -> None:
    """Refuse a stage-1 run of another data set or clip shape, naming the mismatch."""
    recorded = stage1.get("dataset", {})
    if stage1.get("stage") != "video":
        raise ConfigError(f"--video {video_run} is a {stage1.get('stage')!r} run, not a stage-1 (video) run")
    if recorded.get("name") != data.name:
        raise ConfigError(f"--video {video_run} was trained on {recorded.get('name')!r}, not on {data.name!r}; "
                          "train stage 1 on this data set first")  # fmt: skip
    if list(recorded.get("clip_shape", [])) != list(data.clip_shape):
        raise ConfigError(f"--video {video_run} takes clips of shape {recorded.get('clip_shape')} (T, H, W, C), "
                          f"this data set has {list(data.clip_shape)}")  # fmt: skip
    if recorded.get("fingerprint") != data.meta.get("fingerprint"):
        log.warning(f"--video {video_run} was trained on another preparation of {data.name} "
                    "(different options or sources); using it anyway")  # fmt: skip


def build(request: Any, data: PreparedDataset, tables: dict[str, Any], sets: dict[str, Any], train_cfg: Any,
          device: torch.device) -> tuple[AlignTask, dict[str, Any]]:  # fmt: skip
    """The stage-2 task and its resolved config sections."""
    from t2vkit import registry
    from t2vkit.runs import load_decoder
    from t2vkit.training.config import plugin_config

    video_run = request.video
    if video_run is None:
        raise ConfigError("--stage align needs --video RUN_DIR, a stage-1 run (t2vkit train --stage video)")
    if not request.aligner:
        known = ", ".join(registry.get_registry().names("aligner"))
        raise ConfigError(f"--stage align needs --aligner NAME (available: {known})")
    decoder, stage1 = load_decoder(video_run, device)
    check_stage1(stage1, data, video_run)

    encoder, encoder_section = build_encoder(request, tables, sets)

    name = str(request.aligner)
    factory = registry.get("aligner", name).factory
    config = plugin_config(factory, "aligner", name, tables, sets,
                           fixed={"text_dim": encoder.dim, "latent_shape": tuple(decoder.latent_shape)})  # fmt: skip
    noise_p = float(getattr(config, "noise_word_p", 0.0))
    variants = train_cfg.noise_variants if noise_p > 0 else 0

    captions = data.unique_captions()
    text = embed_captions(encoder, captions, variants, train_cfg.seed)
    train_idx, val_idx = data.indices("train"), data.indices("val")
    latents = torch.zeros(len(data), *decoder.latent_shape)
    log.info(f"encoding the {len(train_idx) + len(val_idx)} train and val clips with the stage-1 encoder (once a run)")
    for indices in (train_idx, val_idx):
        if len(indices):
            latents[torch.from_numpy(indices)] = encode_latents(decoder, data, indices, device)
    val_index: dict[int, list[int]] = defaultdict(list)
    for i in val_idx:
        val_index[data.records[i].bucket].append(int(i))

    torch.manual_seed(train_cfg.seed)
    aligner = factory(config)
    task = AlignTask(aligner, aligner.objective(), decoder, text, latents, noise_p, val_index, data)

    decoder_file = component_path(video_run, "decoder")
    sections = {
        "video_run": {"path": str(video_run), "decoder_sha256": sha256_file(decoder_file)},
        "decoder": stage1["decoder"],
        "encoder": encoder_section,
        "aligner": {"name": name, **to_dict(config)},
        "augmentation": {"noise_word_p": noise_p, "variants_per_caption": variants},
    }
    return task, sections


def after_config(request: Any, out: Path) -> None:
    """The stage-2 run carries its own copy of G (byte for byte), so generation needs only this run."""
    atomic_write_bytes(component_path(out, "decoder"), component_path(request.video, "decoder").read_bytes())


def datasets(data: PreparedDataset) -> tuple[ClipDataset, ClipDataset | None]:
    val = ClipDataset(data, "val")
    return ClipDataset(data, "train"), (val if len(val) else None)
