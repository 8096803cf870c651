"""``t2vkit train``: resolve a stage's config, check everything that can be checked before any
work (output folder, data set, plugins, clip shape, resumability), then hand over to the engine.

Each stage module (``video``, ``align``) provides ``build(request, data, tables, sets, train_cfg,
device) -> (task, config sections)``, ``after_config(request, out)`` and ``datasets(data)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2vkit.checkpoint import read_config, write_config
from t2vkit.config import to_dict
from t2vkit.data.store import PreparedDataset
from t2vkit.errors import ConfigError, T2VError
from t2vkit.fsutil import check_can_create, check_writable_dir
from t2vkit.training import distributed
from t2vkit.training.config import Sources, check_resumable, layered_tables, stage_train_config
from t2vkit.training.engine import Summary, Trainer
from t2vkit.training.state import read_progress

STAGES = ("video", "align", "diffusion")
# The config sections --set may address, per stage.
SECTIONS = {"video": {"train", "decoder"}, "align": {"train", "aligner", "encoder"},
            "diffusion": {"train", "denoiser", "encoder"}}  # fmt: skip


@dataclass
class TrainRequest:
    stage: str
    dataset: Path
    out: Path
    decoder: str | None = None  # stage video
    aligner: str | None = None  # stage align
    encoder: str | None = None  # stage align (default: the preset's)
    video: Path | None = None  # stages align and diffusion: the stage-1 run
    sampler: str | None = None  # stage diffusion: the sampler whose network is trained (default diffusion)
    sources: Sources = field(default_factory=Sources)
    resume: bool = False
    device: str = "auto"


def dataset_record(data: PreparedDataset) -> dict[str, Any]:
    """What a run remembers of its data set (later stages check they are given the same one)."""
    return {"path": str(data.root), "name": data.name, "fingerprint": data.meta.get("fingerprint"),
            "clip_shape": list(data.clip_shape)}  # fmt: skip


def _stage_module(stage: str) -> Any:
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    if stage == "video":
        from t2vkit.training import video

        return video
    if stage == "align":
        from t2vkit.training import align

        return align
    from t2vkit.training import diffusion

    return diffusion


def train(request: TrainRequest) -> tuple[Summary, dict[str, Any]]:
    stage = _stage_module(request.stage)
    ctx = distributed.setup(request.device)
    try:
        return _train(request, stage, ctx)
    finally:
        distributed.shutdown()


def _train(request: TrainRequest, stage: Any, ctx: distributed.Context) -> tuple[Summary, dict[str, Any]]:
    out = check_can_create(request.out) if ctx.is_main else Path(request.out)
    data = PreparedDataset(request.dataset)
    tables, sets = layered_tables(request.sources)
    allowed = SECTIONS[request.stage]
    unknown = sorted(set(sets) - allowed)
    if unknown:
        raise ConfigError(f"--set {unknown[0]}.…: stage {request.stage} has no section {unknown[0]!r} "
                          f"(it has {', '.join(sorted(allowed))})")  # fmt: skip
    train_cfg = stage_train_config(tables, sets, request.stage)
    task, sections = stage.build(request, data, tables, sets, train_cfg, ctx.device)
    resolved = {"stage": request.stage, "dataset": dataset_record(data), **sections, "train": to_dict(train_cfg),
                "notes": task.notes()}  # fmt: skip
    train_set, val_set = stage.datasets(data)
    trainer = Trainer(task, train_cfg, out, train_set, val_set, ctx)  # checks the batch size, writes nothing

    if ctx.is_main:  # only rank 0 reads and writes the run directory (it may be local to its node)
        if request.resume:
            stored = read_config(out)
            changed = check_resumable(stored, {**resolved, **_stamp()})
            # config.json holds the config the run goes on with; each resume adds what it changed, and where
            resume = {"step": read_progress(out / "checkpoints" / "last")["step"], "changed": changed}
            resolved["resumes"] = [*stored.get("resumes", []), resume]
        elif (out / "config.json").exists():
            raise T2VError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
        elif out.is_dir() and any(out.iterdir()):
            raise T2VError(f"{out} is not empty; choose an empty or new folder for --out")
        check_writable_dir(out)
        write_config(out, resolved)
        stage.after_config(request, out)
    distributed.barrier()
    return trainer.fit(resume=request.resume), resolved


def _stamp() -> dict[str, Any]:
    from t2vkit import __version__
    from t2vkit.checkpoint import RUN_FORMAT, RUN_FORMAT_VERSION

    return {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, "t2vkit_version": __version__}
