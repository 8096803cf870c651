"""``t2vkit export --trt``: TensorRT engines built from a run's ONNX export with the TensorRT Python API
(builder + ONNX parser), one optimisation profile per engine from ``--batch``, and a timing cache per GPU
and TensorRT version in ``RUN_DIR/trt`` so rebuilding is quick.

fp32 engines are built with TF32 off (true fp32, compared with ONNX Runtime within a tolerance); fp16
engines keep LayerNorm in fp32 (its variance overflows fp16) and are compared for NaN/inf, their max
error reported. Each engine is validated against ONNX Runtime (CPU) on random inputs at the profile's
MIN and OPT batch sizes before anything is written; engines are written under temporary names and
renamed, the record (``engines.json``) last. Which engines to build and why: :mod:`.trt_engine`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from t2vkit import __version__
from t2vkit.fsutil import atomic_write_bytes, sha256_file

from .manifest import Manifest, load_manifest
from .trt_engine import (
    TOKENS_OPT,
    EngineError,
    EngineKey,
    Plan,
    Platform,
    plan_engines,
    read_records,
    refuse_builds,
    slug,
    trt_dir,
    wanted_keys,
    write_records,
)
from .trt_runtime import EngineRunner, current_platform, require_tensorrt, trt_logger

FP32_TOLERANCE = 1e-3  # TensorRT's fp32 kernels sum in other orders than ONNX Runtime's
VALIDATION_TOKENS = 11  # the token length of validation inputs (neither 1, OPT nor MAX of the profile)


def timing_cache_path(run_dir: str | Path, platform: Platform) -> Path:
    """Timing caches hold per-GPU, per-TensorRT measurements: one file each."""
    gpu = f"{slug(platform.gpu)}-sm{platform.compute.replace('.', '')}"
    return trt_dir(run_dir) / f"timing.{gpu}.trt{platform.tensorrt}.cache"


def profile_shapes(shape: list[Any], batch: tuple[int, int, int], max_tokens: int) -> tuple[tuple[int, ...], ...]:
    """(MIN, OPT, MAX) shapes of one input whose manifest shape names its dynamic axes ``batch`` / ``tokens``."""
    tokens = (1, min(TOKENS_OPT, max_tokens), max_tokens)

    def at(i: int) -> tuple[int, ...]:
        return tuple(batch[i] if d == "batch" else tokens[i] if d == "tokens" else int(d) for d in shape)

    return at(0), at(1), at(2)


def build_engine(onnx_path: Path, key: EngineKey, entry: Mapping[str, Any], max_tokens: int,
                 cache: bytes) -> tuple[bytes, bytes]:  # fmt: skip
    """The serialized engine for ``key`` and the timing cache after the build."""
    trt = require_tensorrt()
    builder = trt.Builder(trt_logger())
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, trt_logger())
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if key.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type == trt.LayerType.NORMALIZATION:
                layer.precision = trt.float32
                for out in range(layer.num_outputs):
                    layer.set_output_type(out, trt.float32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    timing = config.create_timing_cache(cache)
    config.set_timing_cache(timing, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    for spec in entry["inputs"]:
        profile.set_shape(spec["name"], *profile_shapes(spec["shape"], key.batch, max_tokens))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT could not build the {key.component} engine from {onnx_path} (its log above "
                          "says why)")  # fmt: skip
    return bytes(serialized), bytes(config.get_timing_cache().serialize())


def random_feeds(entry: Mapping[str, Any], batch: int, tokens: int, timesteps: int,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:  # fmt: skip
    """Inputs fit for a component: normal floats, timesteps in range, masks with ≥ 1 real token per row."""
    feeds = {}
    for spec in entry["inputs"]:
        shape = tuple(batch if d == "batch" else tokens if d == "tokens" else int(d) for d in spec["shape"])
        if spec["dtype"] == "bool":
            real = rng.integers(1, shape[1] + 1, size=shape[0])
            real[0] = shape[1]
            feeds[spec["name"]] = np.arange(shape[1])[None] < real[:, None]
        elif spec["dtype"].startswith("int"):
            feeds[spec["name"]] = rng.integers(0, timesteps, size=shape).astype(spec["dtype"])
        else:
            feeds[spec["name"]] = rng.standard_normal(shape).astype(spec["dtype"])
    return feeds


def validate_engine(runner: EngineRunner, onnx_path: Path, key: EngineKey, entry: Mapping[str, Any],
                    timesteps: int) -> dict[str, dict[str, float]]:  # fmt: skip
    """Max abs error of the engine against ONNX Runtime (CPU) per batch size and output; NaN/inf is an error,
    and so is an fp32 error over :data:`FP32_TOLERANCE`."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outputs = [spec["name"] for spec in entry["outputs"]]
    rng = np.random.default_rng(0)
    errors: dict[str, dict[str, float]] = {}
    for batch in sorted({key.batch[0], key.batch[1]}):
        feeds = random_feeds(entry, batch, VALIDATION_TOKENS, timesteps, rng)
        expected = session.run(outputs, feeds)
        got = runner.run({name: torch.from_numpy(value).cuda() for name, value in feeds.items()})
        errors[str(batch)] = {}
        for name, reference in zip(outputs, expected, strict=True):
            value = got[name].float().cpu().numpy()
            if not np.isfinite(value).all():
                raise EngineError(f"the {key.precision} {key.component} engine gives NaN or inf at batch {batch}; "
                                  "nothing was written (try without --fp16)")  # fmt: skip
            errors[str(batch)][name] = float(np.max(np.abs(value.astype(np.float64) - reference)))
    worst = max(e for per in errors.values() for e in per.values())
    if key.precision == "fp32" and worst > FP32_TOLERANCE:
        raise EngineError(f"the fp32 {key.component} engine differs from ONNX Runtime by {worst:.1e} (tolerance "
                          f"{FP32_TOLERANCE:.0e}); nothing was written")  # fmt: skip
    return errors


def build_engines(run_dir: str | Path, fp16: bool = False, batch: tuple[int, int, int] = (1, 4, 16),
                  no_build: bool = False, force: bool = False,
                  echo: Callable[[str], None] = print) -> list[Plan]:  # fmt: skip
    """Bring ``RUN_DIR/trt`` up to date for this GPU (module docstring). ``no_build``: build nothing, and
    refuse (naming the reason and the command) if an engine would have to be built; ``force``: rebuild
    engines that are up to date. Returns what was kept and built."""
    run_dir = Path(run_dir)
    require_tensorrt("t2vkit export --trt", "")
    manifest = load_manifest(run_dir)
    platform = current_platform()
    records = read_records(run_dir)
    plans = plan_engines(run_dir, wanted_keys(manifest, platform, fp16, batch), records)
    if force:
        plans = [Plan(p.key, "build", "--force") for p in plans]
    if no_build:
        refuse_builds(plans, run_dir, fp16, batch)
        for plan in plans:
            echo(f"{plan.key.component:<8} {plan.key.file}: up to date")
        return plans
    built = _build_all(run_dir, manifest, platform, plans, echo)
    _write(run_dir, records, built, fp16, batch)
    return plans


def _build_all(run_dir: Path, manifest: Manifest, platform: Platform, plans: list[Plan],
               echo: Callable[[str], None]) -> dict[EngineKey, dict[str, Any]]:  # fmt: skip
    """Build and validate every planned engine in memory (nothing is written unless all pass)."""
    cache_path = timing_cache_path(run_dir, platform)
    cache = cache_path.read_bytes() if cache_path.is_file() else b""
    max_tokens = int(manifest.text_encoder["max_length"])
    timesteps = int(manifest.data.get("diffusion", {}).get("denoiser", {}).get("num_train_timesteps", 1000))
    built: dict[EngineKey, dict[str, Any]] = {}
    for plan in plans:
        key = plan.key
        if plan.action == "keep":
            echo(f"{key.component:<8} {key.file}: up to date, kept")
            continue
        echo(f"{key.component:<8} building {key.precision}, batch {','.join(map(str, key.batch))} ({plan.reason})")
        began = time.perf_counter()
        onnx_path = manifest.path(key.component)
        engine, cache = build_engine(onnx_path, key, manifest.components[key.component], max_tokens, cache)
        seconds = time.perf_counter() - began
        runner = EngineRunner(engine, key.file, "the engine was just built: report this as a bug")
        errors = validate_engine(runner, onnx_path, key, manifest.components[key.component], timesteps)
        worst = max(e for per in errors.values() for e in per.values())
        echo(f"{key.component:<8} {key.file}: {len(engine) / 1e6:.1f} MB in {seconds:.0f} s; max abs error vs "
             f"ONNX Runtime {worst:.1e}")  # fmt: skip
        built[key] = {"engine": engine, "build_s": round(seconds, 1), "max_abs_error_vs_onnxruntime": errors}
    if built:
        atomic_write_bytes(cache_path, cache)
    return built


def _write(run_dir: Path, records: dict[str, Any], built: Mapping[EngineKey, dict[str, Any]], fp16: bool,
           batch: tuple[int, int, int]) -> None:  # fmt: skip
    """Engines first (each renamed into place), then the record; stale engines of this GPU and TensorRT for
    the same component and precision are removed (other GPUs' engines stay: a shared run folder serves
    several machines)."""
    folder = trt_dir(run_dir)
    engines = records.setdefault("engines", {})
    for key, result in built.items():
        path = folder / key.file
        atomic_write_bytes(path, result["engine"])
        for name, entry in list(engines.items()):
            old = EngineKey.from_record(entry)
            same_place = (old.component, old.precision, old.gpu, old.compute, old.tensorrt) == (
                key.component, key.precision, key.gpu, key.compute, key.tensorrt)  # fmt: skip
            if same_place and old != key:
                (folder / name).unlink(missing_ok=True)
                del engines[name]
        engines[key.file] = {**key.as_record(), "sha256": sha256_file(path), "build_s": result["build_s"],
                             "max_abs_error_vs_onnxruntime": result["max_abs_error_vs_onnxruntime"],
                             "t2vkit_version": __version__}  # fmt: skip
    records["latest"] = {"precision": "fp16" if fp16 else "fp32", "batch": list(batch)}
    write_records(run_dir, records)


__all__ = ["FP32_TOLERANCE", "build_engine", "build_engines", "profile_shapes", "random_feeds", "timing_cache_path",
           "validate_engine"]  # fmt: skip
