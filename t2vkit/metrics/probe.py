"""The semantic probe: does a generated video show what its prompt says?

A small video classifier (:class:`~t2vkit.models.probe_net.ProbeNet`) is trained once on the real
training clips of a prepared data set and cached; it then classifies generated videos. Its tasks
come from the data set itself: every record attribute that is categorical and fixed by the caption
(constant within every bucket: SyncDraw-MM's digit and motion, KTH's person, action and direction,
but not SyncDraw-MM's speed, which the caption leaves open), plus the bucket itself when there are
2 to :data:`MAX_BUCKET_CLASSES` buckets. A video's expected class is its prompt's bucket's value.

The same :meth:`Probe.accuracy` scores real test clips (the probe's own accuracy, so its numbers can
be trusted) and generated videos (text faithfulness). Cache layout::

    cache_dir (default cache_root()/probes)/<data set>-<key hash>/
        probe.json            format, version, the full key (data set fingerprint, clip shape,
                              config, tasks), training summary
        probe.safetensors     the network's weights, tagged with the key hash

A cache whose format, key or weights do not match is retrained, never trusted.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from t2vkit.checkpoint import save_tensors
from t2vkit.data.store import PreparedDataset, _natural_key
from t2vkit.errors import ConfigError, DataError
from t2vkit.fsutil import atomic_write_json, cache_root
from t2vkit.log import log
from t2vkit.models.probe_net import ProbeNet

FORMAT = "t2vkit-probe"
VERSION = 1
BUCKET_TASK = "bucket"
ALL = "all"  # accuracy key: every task right
MAX_BUCKET_CLASSES = 1000
MAX_CLASSES = 1000  # an attribute with more values is an identifier, not a category

Progress = Callable[[str, int | None, int], None]  # (description, total, advance), as in data prepare


@dataclass
class ProbeConfig:
    width: int = 16  # channels of the first conv; the net has about 0.14M parameters at 16
    patch: int = 4  # pixels per side of the patch embedding
    frame_stride: int = 2  # the net sees every other frame
    batch_size: int = 64
    epochs: int = 4
    lr: float = 6e-3  # the peak of a one-cycle schedule
    warmup: float = 0.15  # fraction of the steps spent warming up to it
    weight_decay: float = 0.01
    val_clips: int = 1000  # validation clips scored after each epoch (the first ones of the split)
    seed: int = 0

    def __post_init__(self) -> None:
        sizes = ("width", "patch", "frame_stride", "batch_size", "epochs")
        if any(getattr(self, name) < 1 for name in sizes) or self.lr <= 0 or not 0 < self.warmup < 1:
            raise ConfigError(f"probe config needs {', '.join(sizes)} >= 1, lr > 0 and 0 < warmup < 1")


@dataclass
class Task:
    """One thing the probe predicts: its class names and each bucket's class."""

    classes: list[str]
    label_of_bucket: list[int]  # bucket id → class index


def discover_tasks(data: PreparedDataset) -> dict[str, Task]:
    """Attributes fixed by the caption (categorical, constant within every bucket, ≥ 2 values), then the bucket."""
    records = data.records
    n_buckets = len(data.buckets)
    tasks: dict[str, Task] = {}
    names = sorted(set.intersection(*(set(r.attributes) for r in records))) if records else []
    for name in names:
        if name in (BUCKET_TASK, ALL):
            continue  # reserved task names
        values = [r.attributes[name] for r in records]
        if not all(isinstance(v, (str, int, bool)) for v in values):
            continue  # floats, lists, None: not a category
        value_of: dict[int, str] = {}  # bucket id → the attribute's value there
        if any(value_of.setdefault(r.bucket, str(v)) != str(v) for r, v in zip(records, values, strict=True)):
            continue  # varies within a bucket: the caption does not fix it
        classes = sorted(set(value_of.values()), key=_natural_key)
        if not 2 <= len(classes) <= MAX_CLASSES:
            continue
        index = {c: i for i, c in enumerate(classes)}
        tasks[name] = Task(classes, [index[value_of[b]] if b in value_of else -1 for b in range(n_buckets)])
    if 2 <= n_buckets <= MAX_BUCKET_CLASSES:
        tasks[BUCKET_TASK] = Task(list(data.buckets), list(range(n_buckets)))
    return tasks


@dataclass
class Probe:
    """A trained probe. ``from_cache`` says whether it was loaded rather than trained by this call."""

    net: ProbeNet
    task_table: dict[str, Task]
    clip_shape: tuple[int, int, int, int]  # (T, H, W, C) of the clips it was trained on
    device: torch.device
    batch_size: int = 64
    info: dict[str, Any] = field(default_factory=dict)  # training summary: epochs, seconds, val accuracy
    from_cache: bool = False

    @property
    def tasks(self) -> dict[str, list[str]]:
        """Task → class names."""
        return {name: list(task.classes) for name, task in self.task_table.items()}

    @torch.no_grad()
    def predict(self, videos: torch.Tensor) -> dict[str, torch.Tensor]:
        """Videos ``[B, C, T, H, W]`` in [-1, 1] → ``{task: predicted class LongTensor [B]}`` (on the CPU)."""
        t, h, w, c = self.clip_shape
        if videos.ndim != 5 or tuple(videos.shape[1:]) != (c, t, h, w):
            raise DataError(f"the probe takes videos [B, {c}, {t}, {h}, {w}] like its data set's clips, "
                            f"got {list(videos.shape)}")  # fmt: skip
        self.net.eval()
        out: dict[str, list[torch.Tensor]] = {name: [] for name in self.task_table}
        for batch in videos.split(self.batch_size):
            logits = self.net(batch.to(self.device, torch.float32))
            for name in out:
                out[name].append(logits[name].argmax(dim=1).cpu())
        return {name: torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long) for name, parts in out.items()}

    def expected(self, bucket_ids: torch.Tensor | Sequence[int]) -> dict[str, torch.Tensor]:
        """Bucket ids ``[B]`` → ``{task: the class the bucket's caption asks for, LongTensor [B]}``."""
        ids = torch.as_tensor(bucket_ids, dtype=torch.long).cpu().reshape(-1)
        n = len(next(iter(self.task_table.values())).label_of_bucket)
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise DataError(f"bucket ids must be in 0..{n - 1}, got {ids.min().item()}..{ids.max().item()}")
        return {name: torch.tensor(task.label_of_bucket)[ids] for name, task in self.task_table.items()}

    def correct(self, videos: torch.Tensor, bucket_ids: torch.Tensor | Sequence[int]) -> dict[str, torch.Tensor]:
        """Per video, whether each task (and ``"all"``) is right: ``{task: BoolTensor [B]}``."""
        return hits(self.predict(videos), self.expected(bucket_ids))

    def accuracy(self, videos: torch.Tensor, bucket_ids: torch.Tensor | Sequence[int]) -> dict[str, float]:
        """Fraction of videos the probe finds showing their bucket's classes, per task and ``"all"``."""
        return accuracy(self.correct(videos, bucket_ids))


def hits(predicted: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{task: BoolTensor [B]}`` of right predictions, plus ``"all"``: every task right."""
    right = {name: predicted[name].cpu() == expected[name].cpu() for name in expected}
    right[ALL] = torch.stack(list(right.values())).all(dim=0)
    return right


def accuracy(right: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean of each task's hits; several batches' hits can be concatenated first."""
    if len(right[ALL]) == 0:
        raise DataError("no videos to score with the probe")
    return {name: r.float().mean().item() for name, r in right.items()}


def split_accuracy(probe: Probe, data: PreparedDataset, split: str = "test",
                   limit: int | None = None) -> dict[str, float]:  # fmt: skip
    """The probe's accuracy on the real clips of ``split`` (the first ``limit`` of them), read in batches."""
    indices = data.indices(split)[:limit]
    if len(indices) == 0:
        raise DataError(f"{data.root} has no {split} clips for the probe to score")
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(indices), probe.batch_size):
        batch = indices[start : start + probe.batch_size]
        buckets = [data.records[i].bucket for i in batch]
        for name, r in probe.correct(_videos(data, batch), buckets).items():
            parts.setdefault(name, []).append(r)
    return accuracy({name: torch.cat(r) for name, r in parts.items()})


def _videos(data: PreparedDataset, indices: np.ndarray) -> torch.Tensor:
    """Clips at ``indices`` → float ``[B, C, T, H, W]`` in [-1, 1] (what clip_to_tensor gives, batched)."""
    clips = torch.from_numpy(np.ascontiguousarray(data.clips[indices]))  # [B, T, H, W, C] uint8
    return clips.permute(0, 4, 1, 2, 3).float().div_(255.0).mul_(2.0).sub_(1.0)


# --------------------------------------------------------------------------- cache


def cache_key(data: PreparedDataset, config: ProbeConfig, tasks: dict[str, Task]) -> dict[str, Any]:
    """Everything a cached probe must match: the data set, the probe's config and the tasks derived from them."""
    return {
        "fingerprint": data.meta.get("fingerprint"),
        "clip_shape": list(data.clip_shape),
        "config": dataclasses.asdict(config),
        "tasks": {name: dataclasses.asdict(task) for name, task in tasks.items()},
    }


def _key_hash(key: dict[str, Any]) -> str:
    blob = json.dumps({"format": FORMAT, "version": VERSION, **key}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def probe_folder(data: PreparedDataset, key: dict[str, Any], cache_dir: str | Path | None = None) -> Path:
    """Where the probe for ``key`` is cached: the data set's name plus a hash of the key."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", str(data.name)).strip("._")[:48] or "dataset"
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "probes"
    return root / f"{readable}-{_key_hash(key)[:16]}"


def load_or_train_probe(
    data: PreparedDataset,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
    config: ProbeConfig | None = None,
) -> Probe:
    """The probe for ``data``: from the cache when a matching one is there, else trained now and cached.

    ``cache_dir`` replaces ``$T2VKIT_CACHE/probes``. A data set without a fingerprint is never cached.
    """
    config = config or ProbeConfig()
    device = torch.device(device)
    tasks = discover_tasks(data)
    if not tasks:
        raise DataError(f"{data.root} gives the probe nothing to classify: it has fewer than 2 buckets and no "
                        "categorical attribute that the caption fixes")  # fmt: skip
    if min(data.clip_shape[1:3]) < config.patch:
        raise DataError(f"{data.root} has clips of {data.clip_shape[1]}×{data.clip_shape[2]} pixels, "
                        f"too small for the probe's {config.patch}×{config.patch} patches")  # fmt: skip
    key = cache_key(data, config, tasks)
    folder = probe_folder(data, key, cache_dir) if key["fingerprint"] else None
    if folder is not None:
        probe = _load(folder, key, data, tasks, config, device)
        if probe is not None:
            return probe
    else:
        log.info(f"{data.root} has no fingerprint in meta.json; the probe is trained but not cached")
    probe = train_probe(data, tasks, config, device, progress)
    if folder is not None:
        _save(folder, key, probe)
    return probe


def _save(folder: Path, key: dict[str, Any], probe: Probe) -> None:
    """Weights first, then the JSON that vouches for them, each atomically."""
    digest = _key_hash(key)
    try:
        save_tensors(folder / "probe.safetensors", probe.net.state_dict(), metadata={"key": digest})
        atomic_write_json(folder / "probe.json", {"format": FORMAT, "version": VERSION, "key_sha256": digest,
                                                  "key": key, "training": probe.info})  # fmt: skip
    except OSError as exc:
        log.warning(f"cannot write the probe cache in {folder} ({exc}); the probe is not cached")


def _load(folder: Path, key: dict[str, Any], data: PreparedDataset, tasks: dict[str, Task], config: ProbeConfig,
          device: torch.device) -> Probe | None:  # fmt: skip
    """The cached probe in ``folder`` if its format, key and weights all match; None (and a warning) otherwise."""
    from safetensors import SafetensorError, safe_open

    meta_path, weights_path = folder / "probe.json", folder / "probe.safetensors"
    if not meta_path.exists():
        return None
    digest = _key_hash(key)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not (isinstance(meta, dict) and meta.get("format") == FORMAT and meta.get("version") == VERSION
                and meta.get("key") == key and meta.get("key_sha256") == digest):  # fmt: skip
            raise ValueError("it was made for another data set, config or t2vkit version")
        with safe_open(str(weights_path), framework="pt") as fh:
            if (fh.metadata() or {}).get("key") != digest:
                raise ValueError("its weights belong to another probe")
            state = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118 (safe_open is not a dict)
        net = _new_net(data, tasks, config)
        net.load_state_dict(state, strict=True)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        log.warning(f"probe cache {folder} is unusable ({str(exc).splitlines()[0] if str(exc) else exc!r}); "
                    "training the probe again")  # fmt: skip
        return None
    info = meta.get("training") if isinstance(meta.get("training"), dict) else {}
    return Probe(net.to(device).eval(), tasks, data.clip_shape, device, config.batch_size, info, from_cache=True)


# --------------------------------------------------------------------------- training


def _new_net(data: PreparedDataset, tasks: dict[str, Task], config: ProbeConfig) -> ProbeNet:
    heads = {name: len(task.classes) for name, task in tasks.items()}
    return ProbeNet(data.clip_shape[3], heads, width=config.width, patch=config.patch, frame_stride=config.frame_stride)


def train_probe(data: PreparedDataset, tasks: dict[str, Task], config: ProbeConfig, device: torch.device,
                progress: Progress | None = None) -> Probe:  # fmt: skip
    """Cross-entropy summed over tasks, AdamW with a one-cycle schedule, on the train split. With a val
    split, the epoch with the best validation accuracy (every task right) is kept; a perfect one ends
    training early."""
    train = data.indices("train")
    if len(train) == 0:
        raise DataError(f"{data.root} has no training clips to train the probe on")
    val = data.indices("val")[: config.val_clips]
    progress = progress or (lambda description, total, advance: None)
    buckets = torch.tensor([r.bucket for r in data.records], dtype=torch.long)
    labels = {name: torch.tensor(task.label_of_bucket, dtype=torch.long)[buckets] for name, task in tasks.items()}

    with torch.random.fork_rng(devices=[]):  # a fixed seed without touching the caller's random state
        torch.manual_seed(config.seed)
        net = _new_net(data, tasks, config).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=steps_per_epoch * config.epochs,
                                                   pct_start=config.warmup)  # fmt: skip
    rng = np.random.default_rng(config.seed)
    probe = Probe(net, tasks, data.clip_shape, device, config.batch_size)

    start = time.perf_counter()
    progress("training the probe", steps_per_epoch * config.epochs, 0)
    best, best_state, epochs, history = -1.0, None, 0, []
    for _ in range(config.epochs):
        net.train()
        order = rng.permutation(train)
        for step in range(steps_per_epoch):
            batch = np.sort(order[step * config.batch_size : (step + 1) * config.batch_size])  # sorted: memmap reads
            logits = net(_videos(data, batch).to(device))
            loss = sum(F.cross_entropy(logits[name], labels[name][batch].to(device)) for name in tasks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            progress("", None, 1)
        epochs += 1
        if len(val) == 0:
            continue
        score = split_accuracy(probe, data, "val", limit=config.val_clips)[ALL]
        history.append(round(score, 4))
        if score > best:
            best, best_state = score, copy.deepcopy(net.state_dict())
        if best >= 1.0:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    probe.info = {"epochs": epochs, "seconds": round(time.perf_counter() - start, 1), "train_clips": len(train),
                  "val_all_by_epoch": history, "val_all": round(best, 4) if history else None}  # fmt: skip
    return probe
