"""TensorRT engines of a run's ONNX export, in ``RUN_DIR/trt``: which ones a machine needs, and whether the ones
on disk still fit.

An engine only runs on the GPU model (compute capability) and TensorRT version it was built with, and only
means something for the ONNX file it was built from; :class:`EngineKey` names each engine file by all of
them (and by its precision and batch profile), and ``RUN_DIR/trt/engines.json`` records every key with
the engine file's sha256, so a stale or foreign engine is told apart from a missing one and the reason
is said: "built for NVIDIA A100 (compute 8.0), this GPU is NVIDIA H100 (compute 9.0)".

Engines are built for ``mapping``, ``unet`` and ``decoder``; the text encoder stays in ONNX Runtime (its
share of the time is small, and its token axis is ragged). The UNet's batch profile is twice the
requested one at OPT and MAX: classifier-free guidance runs the empty and the real captions in one call.

Pure logic (no TensorRT, no GPU): building is :mod:`t2vkit.exporters.trt_build`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from t2vkit.errors import CheckpointError, T2VError
from t2vkit.fsutil import atomic_write_json, read_json, sha256_file

from .manifest import Manifest

FORMAT = "t2vkit-trt"
FORMAT_VERSION = 1
TRT_DIR = "trt"
RECORDS_NAME = "engines.json"
ENGINE_COMPONENTS = ("mapping", "unet", "decoder")
TOKENS_OPT = 16  # the token length engines are tuned for (captions are short); any length up to the encoder's works


class EngineError(T2VError):
    """A TensorRT engine that is missing, stale, foreign or broken, or a build that failed."""


def trt_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / TRT_DIR


def trt_command(run_dir: str | Path, fp16: bool, batch: tuple[int, int, int] | None = None) -> str:
    """The command that builds the engines a runtime is missing."""
    profile = f" --batch {','.join(map(str, batch))}" if batch is not None else ""
    return f"t2vkit export {run_dir} --trt{' --fp16' if fp16 else ''}{profile}"


def slug(text: str) -> str:
    """``"NVIDIA GeForce RTX 4090"`` → ``"nvidia-geforce-rtx-4090"``: a GPU name fit for a file name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


@dataclass(frozen=True)
class Platform:
    """What an engine is tied to besides its ONNX file: the GPU model and the TensorRT version."""

    gpu: str  # the device name, e.g. "NVIDIA H100 80GB HBM3"
    compute: str  # compute capability, e.g. "9.0"
    tensorrt: str  # e.g. "10.3.0"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine file is valid for; its file name spells all of it out."""

    component: str
    precision: str  # fp32 or fp16
    batch: tuple[int, int, int]  # the optimisation profile's MIN, OPT, MAX batch sizes
    gpu: str
    compute: str
    tensorrt: str
    onnx_sha256: str

    @property
    def file(self) -> str:
        low, opt, high = self.batch
        gpu = f"{slug(self.gpu)}-sm{self.compute.replace('.', '')}"
        onnx = self.onnx_sha256[:12]
        return f"{self.component}.{self.precision}.b{low}-{opt}-{high}.{gpu}.trt{self.tensorrt}.{onnx}.engine"

    def as_record(self) -> dict[str, Any]:
        return {**asdict(self), "batch": list(self.batch)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> EngineKey:
        fields = {name: record[name] for name in cls.__dataclass_fields__}
        return cls(**{**fields, "batch": tuple(fields["batch"])})


def engine_batch(component: str, batch: tuple[int, int, int]) -> tuple[int, int, int]:
    """The profile an engine is built for: the UNet's OPT and MAX doubled (guidance runs the empty and the real
    captions as one batch), its MIN kept (without guidance it runs the videos alone)."""
    low, opt, high = batch
    return (low, 2 * opt, 2 * high) if component == "unet" else (low, opt, high)


def wanted_keys(manifest: Manifest, platform: Platform, fp16: bool, batch: tuple[int, int, int]) -> list[EngineKey]:
    """The engines this machine needs for ``manifest``'s export, in generation order."""
    precision = "fp16" if fp16 else "fp32"
    return [EngineKey(name, precision, engine_batch(name, batch), platform.gpu, platform.compute, platform.tensorrt,
                      manifest.components[name]["sha256"])
            for name in ENGINE_COMPONENTS if name in manifest.components]  # fmt: skip


def mismatch(recorded: EngineKey, wanted: EngineKey) -> str | None:
    """Why an engine built for ``recorded`` cannot serve ``wanted`` (one phrase), or None if it can."""
    if (recorded.gpu, recorded.compute) != (wanted.gpu, wanted.compute):
        return (f"it was built for {recorded.gpu} (compute {recorded.compute}) and this GPU is {wanted.gpu} "
                f"(compute {wanted.compute})")  # fmt: skip
    if recorded.tensorrt != wanted.tensorrt:
        return f"it was built with TensorRT {recorded.tensorrt} and this is TensorRT {wanted.tensorrt}"
    if recorded.onnx_sha256 != wanted.onnx_sha256:
        return "it was built from an earlier ONNX export (the run was exported again since)"
    if recorded.precision != wanted.precision:
        return f"it is {recorded.precision}, not {wanted.precision}"
    if recorded.batch != wanted.batch:
        low, opt, high = recorded.batch
        return f"it was built for batch profile {low},{opt},{high}, not {','.join(map(str, wanted.batch))}"
    return None


# --------------------------------------------------------------------------- engines.json


def read_records(run_dir: str | Path) -> dict[str, Any]:
    """``RUN_DIR/trt/engines.json`` (an empty record when there is none yet)."""
    path = trt_dir(run_dir) / RECORDS_NAME
    if not path.is_file():
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "engines": {}}
    data = read_json(path, CheckpointError, f"; delete {trt_dir(run_dir)} and run `t2vkit export {run_dir} --trt`")
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a t2vkit engine record this version reads; delete {trt_dir(run_dir)} "
                              f"and run `t2vkit export {run_dir} --trt`")  # fmt: skip
    return data


def write_records(run_dir: str | Path, data: Mapping[str, Any]) -> None:
    atomic_write_json(trt_dir(run_dir) / RECORDS_NAME, data)


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Plan:
    """What to do about one wanted engine: ``keep`` the file on disk, or ``build`` it (``reason`` says why)."""

    key: EngineKey
    action: str
    reason: str


def plan_engines(run_dir: str | Path, wanted: list[EngineKey], records: Mapping[str, Any]) -> list[Plan]:
    """Keep an engine whose file is recorded under its exact key with an unchanged sha256; build the others,
    saying why (the closest recorded engine's :func:`mismatch`, a changed file, or none built yet)."""
    folder, engines = trt_dir(run_dir), records.get("engines", {})
    plans = []
    for key in wanted:
        entry, path = engines.get(key.file), folder / key.file
        if entry is not None and path.is_file():
            if sha256_file(path) == entry["sha256"]:
                plans.append(Plan(key, "keep", "up to date"))
            else:
                plans.append(Plan(key, "build", "its file changed after it was built (sha256)"))
            continue
        if entry is not None:
            plans.append(Plan(key, "build", f"its file {path} is missing"))
            continue
        plans.append(Plan(key, "build", _closest_reason(key, engines) or "none was built yet"))
    return plans


def _closest_reason(key: EngineKey, engines: Mapping[str, Any]) -> str | None:
    """The mismatch of the recorded engine of the same component that differs least (the same precision and
    platform first), so the reason names what actually changed."""
    same = [EngineKey.from_record(e) for e in engines.values() if e.get("component") == key.component]

    def rank(other: EngineKey) -> tuple[bool, bool, bool, bool]:
        return (other.precision != key.precision, (other.gpu, other.compute) != (key.gpu, key.compute),
                other.tensorrt != key.tensorrt, other.onnx_sha256 != key.onnx_sha256)  # fmt: skip

    return mismatch(min(same, key=rank), key) if same else None


def refuse_builds(plans: list[Plan], run_dir: str | Path, fp16: bool, batch: tuple[int, int, int]) -> None:
    """``--no-build`` (and the runtimes): one clear error for the first engine that would have to be built."""
    for plan in plans:
        if plan.action == "build":
            raise EngineError(f"no usable {plan.key.precision} TensorRT engine for the {plan.key.component} in "
                              f"{trt_dir(run_dir)}: {plan.reason}; run `{trt_command(run_dir, fp16, batch)}` to "
                              "build it")  # fmt: skip


def select_engines(run_dir: str | Path, manifest: Manifest, platform: Platform,
                   fp16: bool | None) -> dict[str, tuple[EngineKey, Path]]:  # fmt: skip
    """The engines a runtime loads: per engine component, a recorded engine of this GPU, TensorRT and ONNX
    file in the precision asked (None: the one built last), of any batch profile (the last built first),
    its file checked; one clear error naming the build command otherwise."""
    records = read_records(run_dir)
    latest = records.get("latest", {})
    fp16 = latest.get("precision") == "fp16" if fp16 is None else fp16
    profile = manifest.data["batch_profile"]
    batch = tuple(latest.get("batch") or (profile["min"], profile["opt"], profile["max"]))
    recorded = [EngineKey.from_record(entry) for entry in records["engines"].values()]
    found: dict[str, tuple[EngineKey, Path]] = {}
    for key in wanted_keys(manifest, platform, fp16, batch):  # type: ignore[arg-type]
        usable = [k for k in recorded if k.component == key.component and k.precision == key.precision
                  and _same_source(k, key)]  # fmt: skip
        usable.sort(key=lambda k: k.batch != key.batch)
        chosen = usable[0] if usable else key
        refuse_builds(plan_engines(run_dir, [chosen], records), run_dir, fp16, batch)  # type: ignore[arg-type]
        found[key.component] = (chosen, trt_dir(run_dir) / chosen.file)
    return found


def _same_source(recorded: EngineKey, wanted: EngineKey) -> bool:
    """An engine of this platform and ONNX file, whatever batch profile it was built for (a runtime takes any)."""
    return (recorded.gpu, recorded.compute, recorded.tensorrt, recorded.onnx_sha256) == (
        wanted.gpu, wanted.compute, wanted.tensorrt, wanted.onnx_sha256)  # fmt: skip


__all__ = ["ENGINE_COMPONENTS", "EngineError", "EngineKey", "Plan", "Platform", "mismatch", "plan_engines",
           "read_records", "refuse_builds", "select_engines", "trt_command", "trt_dir", "wanted_keys"]  # fmt: skip
