"""The training section of a run config, and how a stage's whole config is resolved and checked.

A run's ``config.json`` is the *resolved* config: preset → ``--config FILE.toml`` → ``--set``
overrides, with the chosen plugins' tables flattened to ``{"name": ..., **fields}``. ``--resume``
compares it with the stored one, ignoring the keys that only steer the run (not its result).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from t2vkit.config import (
    differences,
    from_dict,
    load_preset,
    load_toml,
    merge,
    parse_overrides,
    plugin_section,
    to_dict,
)
from t2vkit.errors import ConfigError


@dataclass
class TrainConfig:
    epochs: int = 100
    max_steps: int | None = None  # stop after this many steps in all (overrides epochs)
    batch_size: int = 64  # per process
    lr: float = 1e-4  # peak learning rate
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to min_lr at the last step
    warmup_steps: int = 0  # linear warm-up from 0 to lr over the first steps
    min_lr: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)  # Adam
    weight_decay: float = 0.0
    grad_clip: float = 5.0  # global gradient-norm clip, per optimizer
    seed: int = 0
    log_every: int = 10
    eval_every: int = 500
    save_every: int = 500
    val_clips: int = 256  # validation clips per evaluation (the first ones of the split)
    num_workers: int = 2
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False  # torch.compile the trained networks
    channels_last: bool = False  # channels-last (3D) memory format for the trained networks
    noise_variants: int = 16  # stage 2: noise-word variants embedded per caption (text augmentation)
    ema_decay: float = 0.999  # stage diffusion: the exported denoiser is this EMA of the trained one

    def __post_init__(self) -> None:
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr and self.warmup_steps >= 0):
            got = f"lr={self.lr}, min_lr={self.min_lr}, warmup_steps={self.warmup_steps}"
            raise ConfigError(f"train needs lr > 0, 0 <= min_lr <= lr and warmup_steps >= 0 (got {got})")

    def learning_rate(self, step: int, total: int) -> float:
        """The learning rate of 0-based step ``step`` of ``total``: a pure function of the step, so a
        resumed run follows the same curve (``--max-steps`` moves the end of a cosine decay)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return self.lr
        progress = min(1.0, (step - self.warmup_steps) / max(1, total - self.warmup_steps))
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))


# Keys that change how a run is carried out, not what it computes: --resume may differ in these.
RESUME_FREE = {
    "train.max_steps", "train.log_every", "train.eval_every", "train.save_every", "train.val_clips",
    "train.num_workers", "train.compile", "notes", "format", "format_version", "t2vkit_version", "dataset.path",
    "resumes",
}  # fmt: skip
# Differences a resume does not record in the run's history: its own stamp and the history itself.
UNRECORDED = {"format", "format_version", "t2vkit_version", "notes", "resumes"}


@dataclass
class Sources:
    """Where the layers of a config come from."""

    preset: str = "quick"
    config_file: Path | None = None
    overrides: tuple[str, ...] = ()


def layered_tables(sources: Sources) -> tuple[dict[str, Any], dict[str, Any]]:
    """(preset merged with the config file, the parsed ``--set`` overrides)."""
    tables = load_preset(sources.preset)
    if sources.config_file is not None:
        tables = merge(tables, load_toml(sources.config_file))
    return tables, parse_overrides(sources.overrides)


def stage_train_config(tables: dict[str, Any], sets: dict[str, Any], stage: str) -> TrainConfig:
    section = tables.get("train", {}).get(stage, {})
    return from_dict(TrainConfig, merge(section, sets.get("train", {})), where=f"train ({stage})")


def plugin_config(factory: Any, kind: str, name: str, tables: dict[str, Any], sets: dict[str, Any],
                  fixed: dict[str, Any] | None = None) -> Any:  # fmt: skip
    """The ``Config`` of plugin ``name``: its preset/config-file table, then ``--set kind.x=...``,
    then ``fixed`` values that come from elsewhere (the data set's clip shape)."""
    values = merge(plugin_section(tables, kind, name), {k: v for k, v in sets.get(kind, {}).items() if k != "name"})
    for key, value in (fixed or {}).items():
        if key in values and to_dict(values[key]) != to_dict(value):
            raise ConfigError(f"{kind}.{key} = {to_dict(values[key])!r} conflicts with {key} = {to_dict(value)!r}, "
                              "given by the data set or the stage-1 run")  # fmt: skip
        values[key] = value
    return from_dict(factory.Config, values, where=f"{kind} {name}")


def check_resumable(stored: dict[str, Any], resolved: dict[str, Any]) -> dict[str, Any]:
    """Refuse to resume a run whose config differs, naming the keys; return what the resume does change
    (run-steering keys, keys the stored config lacks), dotted key → new value, for the run's history.

    Keys the stored config lacks were added by a newer t2vkit; their defaults keep the old behaviour.
    """
    differing = differences(stored, resolved)
    refused = [k for k in differing if k not in RESUME_FREE and _lookup(stored, k) is not _MISSING]
    if refused:
        shown = ", ".join(refused[:8]) + (f" (and {len(refused) - 8} more)" if len(refused) > 8 else "")
        raise ConfigError(f"cannot resume: the run was made with a different config ({shown}); "
                          "use the same options, or start a new run with another --out")  # fmt: skip
    changed = {k: _lookup(resolved, k) for k in differing if k.split(".")[0] not in UNRECORDED}
    return {k: None if v is _MISSING else v for k, v in changed.items()}


_MISSING = object()


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key of a nested config, or ``_MISSING``."""
    for part in dotted.split("."):
        if not isinstance(config, dict) or part not in config:
            return _MISSING
        config = config[part]
    return config
