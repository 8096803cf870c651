"""TensorRT: the decisions that need no GPU (engine names, staleness, refusals, profiles) everywhere; building,
validating and generating with engines only where `import tensorrt` works and a CUDA GPU is present (see the
README's "GPU tests")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from t2vkit.errors import CheckpointError
from t2vkit.exporters import trt_runtime
from t2vkit.exporters.manifest import Manifest
from t2vkit.exporters.trt_build import profile_shapes, random_feeds
from t2vkit.exporters.trt_engine import (
    EngineError,
    EngineKey,
    Platform,
    engine_batch,
    mismatch,
    plan_engines,
    read_records,
    refuse_builds,
    select_engines,
    trt_dir,
    wanted_keys,
    write_records,
)
from t2vkit.fsutil import sha256_file

T2VKIT = str(Path(sys.executable).parent / "t2vkit")
H100 = Platform("NVIDIA H100 80GB HBM3", "9.0", "10.3.0")
A100 = Platform("NVIDIA A100-SXM4-40GB", "8.0", "10.3.0")
ONNX_SHA = {"mapping": "a" * 64, "decoder": "b" * 64}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([T2VKIT, *args], capture_output=True, text=True, timeout=300, env=dict(os.environ))


def one_line_error(result: subprocess.CompletedProcess, message: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0], lines[0]
    return lines[0]


def fake_manifest(run: Path) -> Manifest:
    """An align run's manifest as far as engine decisions read it."""
    components = {name: {"file": f"{name}.onnx", "sha256": sha} for name, sha in ONNX_SHA.items()}
    components["text_encoder"] = {"file": "text_encoder.onnx", "sha256": "c" * 64}
    return Manifest(run, {"components": components, "batch_profile": {"min": 1, "opt": 4, "max": 16}})


def record(run: Path, key: EngineKey, content: bytes = b"engine") -> None:
    """Put an engine file and its record in place, as a build would."""
    folder = trt_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / key.file).write_bytes(content)
    records = read_records(run)
    records["engines"][key.file] = {**key.as_record(), "sha256": sha256_file(folder / key.file)}
    records["latest"] = {"precision": key.precision, "batch": [1, 4, 16]}
    write_records(run, records)


# --------------------------------------------------------------------------- pure logic (no GPU)


def test_engine_files_are_named_by_gpu_tensorrt_onnx_hash_precision_and_profile(tmp_path):
    mapping, decoder = wanted_keys(fake_manifest(tmp_path), H100, True, (1, 4, 16))
    assert mapping.file == "mapping.fp16.b1-4-16.nvidia-h100-80gb-hbm3-sm90.trt10.3.0.aaaaaaaaaaaa.engine"
    assert decoder.component == "decoder" and decoder.onnx_sha256 == ONNX_SHA["decoder"]
    assert EngineKey.from_record(json.loads(json.dumps(mapping.as_record()))) == mapping
    assert engine_batch("unet", (1, 4, 16)) == (1, 8, 32)  # guidance: [∅; c] in one call
    assert engine_batch("decoder", (2, 4, 8)) == (2, 4, 8)


def test_mismatch_names_what_changed():
    key = EngineKey("decoder", "fp16", (1, 4, 16), *vars(H100).values(), "b" * 64)
    assert mismatch(key, key) is None
    foreign = EngineKey("decoder", "fp16", (1, 4, 16), *vars(A100).values(), "b" * 64)
    assert mismatch(foreign, key) == ("it was built for NVIDIA A100-SXM4-40GB (compute 8.0) and this GPU is "
                                      "NVIDIA H100 80GB HBM3 (compute 9.0)")  # fmt: skip
    old_trt = EngineKey("decoder", "fp16", (1, 4, 16), H100.gpu, H100.compute, "8.6.1", "b" * 64)
    assert mismatch(old_trt, key) == "it was built with TensorRT 8.6.1 and this is TensorRT 10.3.0"
    stale = EngineKey("decoder", "fp16", (1, 4, 16), *vars(H100).values(), "f" * 64)
    assert "earlier ONNX export" in mismatch(stale, key)
    other_batch = EngineKey("decoder", "fp16", (1, 8, 32), *vars(H100).values(), "b" * 64)
    assert mismatch(other_batch, key) == "it was built for batch profile 1,8,32, not 1,4,16"


def test_plans_keep_fresh_engines_and_rebuild_stale_or_foreign_ones_saying_why(tmp_path):
    run = tmp_path / "run"
    manifest = fake_manifest(run)
    mapping, decoder = wanted_keys(manifest, H100, False, (1, 4, 16))
    plans = plan_engines(run, [mapping, decoder], read_records(run))
    assert [(p.action, p.reason) for p in plans] == [("build", "none was built yet")] * 2

    record(run, mapping)
    decoder_only = Manifest(run, {**manifest.data, "components": {"decoder": manifest.components["decoder"]}})
    (foreign,) = wanted_keys(decoder_only, A100, False, (1, 4, 16))
    record(run, foreign)
    keep, rebuild = plan_engines(run, [mapping, decoder], read_records(run))
    assert (keep.action, keep.reason) == ("keep", "up to date")
    assert rebuild.action == "build" and "built for NVIDIA A100-SXM4-40GB (compute 8.0)" in rebuild.reason

    (trt_dir(run) / mapping.file).write_bytes(b"tampered")
    (changed,) = plan_engines(run, [mapping], read_records(run))
    assert changed.reason == "its file changed after it was built (sha256)"
    (trt_dir(run) / mapping.file).unlink()
    (missing,) = plan_engines(run, [mapping], read_records(run))
    assert missing.action == "build" and "is missing" in missing.reason


def test_no_build_and_the_runtime_refuse_with_the_reason_and_the_command(tmp_path):
    run = tmp_path / "run"
    manifest = fake_manifest(run)
    (foreign,) = [k for k in wanted_keys(manifest, A100, True, (1, 4, 16)) if k.component == "mapping"]
    record(run, foreign)
    plans = plan_engines(run, wanted_keys(manifest, H100, True, (1, 4, 16)), read_records(run))
    with pytest.raises(EngineError, match=r"no usable fp16 TensorRT engine for the mapping in .*trt: it was built "
                                          r"for NVIDIA A100-SXM4-40GB \(compute 8\.0\) and this GPU is NVIDIA H100 "
                                          r".*; run `t2vkit export .*run --trt --fp16 --batch 1,4,16` to build it"):
        refuse_builds(plans, run, True, (1, 4, 16))
    with pytest.raises(EngineError, match=r"mapping in .*: it was built for NVIDIA A100"):
        select_engines(run, manifest, H100, None)  # the precision built last: fp16


def test_the_runtime_takes_this_platforms_engines_of_any_profile(tmp_path):
    run = tmp_path / "run"
    manifest = fake_manifest(run)
    for key in wanted_keys(manifest, H100, False, (1, 8, 32)):
        record(run, key)
    chosen = select_engines(run, manifest, H100, False)
    assert set(chosen) == {"mapping", "decoder"}
    key, path = chosen["decoder"]
    assert key.batch == (1, 8, 32) and path == trt_dir(run) / key.file
    with pytest.raises(EngineError, match=r"no usable fp16 TensorRT engine for the mapping in .*: it is fp32, not"):
        select_engines(run, manifest, H100, True)


def test_a_corrupt_engine_record_is_one_clear_error(tmp_path):
    run = tmp_path / "run"
    trt_dir(run).mkdir(parents=True)
    (trt_dir(run) / "engines.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"engines.json is corrupt .*; delete .*trt and run `t2vkit export "):
        read_records(run)


def test_profiles_and_validation_inputs_follow_the_manifest_shapes():
    assert profile_shapes(["batch", "tokens", 384], (1, 4, 16), 256) == ((1, 1, 384), (4, 16, 384), (16, 256, 384))
    assert profile_shapes(["batch", 1, 8, 32, 32], (2, 8, 32), 77) == ((2, 1, 8, 32, 32), (8, 1, 8, 32, 32),
                                                                       (32, 1, 8, 32, 32))  # fmt: skip
    entry = {"inputs": [{"name": "x_t", "dtype": "float32", "shape": ["batch", 1, 8, 4, 4]},
                        {"name": "t", "dtype": "int64", "shape": ["batch"]},
                        {"name": "mask", "dtype": "bool", "shape": ["batch", "tokens"]}]}  # fmt: skip
    feeds = random_feeds(entry, 3, 5, 1000, np.random.default_rng(0))
    assert feeds["x_t"].shape == (3, 1, 8, 4, 4) and feeds["x_t"].dtype == np.float32
    assert feeds["t"].dtype == np.int64 and feeds["t"].min() >= 0 and feeds["t"].max() < 1000
    assert feeds["mask"].dtype == bool and feeds["mask"][0].all() and feeds["mask"].any(axis=1).all()


def test_trt_unavailable_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(trt_runtime.importlib.util, "find_spec", lambda name: None)
    assert trt_runtime.trt_unavailable() == ('TensorRT is not installed (pip install "t2vkit[gpu]" on a machine '
                                             "with an NVIDIA GPU)")  # fmt: skip
    monkeypatch.setattr(trt_runtime.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(trt_runtime, "cuda_device_present", lambda: False)
    assert trt_runtime.trt_unavailable() == "TensorRT needs an NVIDIA GPU and the CUDA driver sees none here"
    with pytest.raises(EngineError, match=r"^--backend trt cannot run here: TensorRT needs an NVIDIA GPU .*; use "
                                          r"--backend onnx or torch$"):
        trt_runtime.require_tensorrt()


def test_backend_trt_and_export_trt_without_tensorrt_or_gpu_are_one_clear_error(aligned, tmp_path):
    reason = trt_runtime.trt_unavailable()
    if reason is None:
        pytest.skip("TensorRT and a GPU are present here: the GPU tests below cover --backend trt")
    result = cli("generate", "digit 1 is moving up and down", "--model", str(aligned), "--backend", "trt",
                 "--out", str(tmp_path / "x.mp4"))  # fmt: skip
    one_line_error(result, f"--backend trt cannot run here: {reason}; use --backend onnx or torch")
    assert not (tmp_path / "x.mp4").exists()
    run = Path(shutil.copytree(aligned, tmp_path / "run"))
    one_line_error(cli("export", str(run), "--trt", "--fp16"), f"t2vkit export --trt cannot run here: {reason}")
    assert not trt_dir(run).exists()
    one_line_error(cli("export", str(run), "--fp16"), "--fp16 is an option of --trt engines; add --trt")
    one_line_error(cli("generate", "digit 1", "--model", str(run), "--cuda-graph"), "--cuda-graph is an option of")


# --------------------------------------------------------------------------- on a GPU with TensorRT


@pytest.fixture(scope="module")
def gpu():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install \"t2vkit[gpu]\")")
    reason = trt_runtime.trt_unavailable()
    if reason is not None:
        pytest.skip(reason)
    import torch

    if not torch.cuda.is_available():
        pytest.skip("this PyTorch has no CUDA support (TensorRT's buffers are torch tensors)")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def engines(gpu, aligned, diffusion, tmp_path_factory):
    """Copies of the tiny runs with fp32 and fp16 engines (fp16 built last: the runtime's default)."""
    from t2vkit.exporters.trt_build import build_engines

    root = tmp_path_factory.mktemp("trt")
    runs = {name: Path(shutil.copytree(run, root / name)) for name, run in (("aligned", aligned),
                                                                            ("diffusion", diffusion))}  # fmt: skip
    for run in runs.values():
        build_engines(run, fp16=False, batch=(1, 2, 8), echo=lambda line: None)
        build_engines(run, fp16=True, batch=(1, 2, 8), echo=lambda line: None)
    return runs


PROMPTS = ["digit 3 is moving up and down", "digit 7 is moving left and right"]


def test_engines_are_built_recorded_and_validated(engines):
    run = engines["aligned"]
    records = read_records(run)
    assert records["latest"] == {"precision": "fp16", "batch": [1, 2, 8]}
    assert {(e["component"], e["precision"]) for e in records["engines"].values()} == {
        (c, p) for c in ("mapping", "decoder") for p in ("fp32", "fp16")}  # fmt: skip
    for name, entry in records["engines"].items():
        assert sha256_file(trt_dir(run) / name) == entry["sha256"]
        worst = max(e for per in entry["max_abs_error_vs_onnxruntime"].values() for e in per.values())
        assert worst <= (1e-3 if entry["precision"] == "fp32" else 1.0)
    assert list(trt_dir(run).glob("timing.*.cache"))
    from t2vkit.exporters.trt_build import build_engines

    lines: list[str] = []
    plans = build_engines(run, fp16=True, batch=(1, 2, 8), echo=lines.append)
    assert [p.action for p in plans] == ["keep", "keep"] and all("up to date" in line for line in lines)


def test_trt_videos_match_torch(engines):
    from t2vkit.exporters.trt_runtime import TrtPipeline
    from t2vkit.pipeline import Pipeline

    run = engines["aligned"]
    reference = Pipeline.from_run(run).videos(PROMPTS, n=1)
    fp32 = TrtPipeline.from_run(run, fp16=False).videos(PROMPTS)
    assert fp32.shape == reference.shape and int(np.abs(fp32.astype(int) - reference.astype(int)).max()) <= 1
    assert psnr(TrtPipeline.from_run(run).videos(PROMPTS), reference) >= 35.0  # fp16, built last

    sampling = {"steps": 3, "cfg": 2.0, "mg_alpha": 40.0}
    run = engines["diffusion"]
    reference = Pipeline.from_run(run, options=sampling).videos(PROMPTS, n=2, seed=5)
    plain = TrtPipeline.from_run(run, options=sampling).videos(PROMPTS, n=2, seed=5)
    graphed = TrtPipeline.from_run(run, options=sampling, cuda_graph=True).videos(PROMPTS, n=2, seed=5)
    assert psnr(plain, reference) >= 35.0
    assert psnr(graphed, plain) >= 50.0


def test_a_foreign_engine_is_refused_under_no_build_and_rebuilt_without(engines, tmp_path):
    from t2vkit.exporters.trt_build import build_engines

    run = Path(shutil.copytree(engines["aligned"], tmp_path / "run"))
    records = read_records(run)
    for name in list(records["engines"]):
        entry = records["engines"].pop(name)
        foreign = EngineKey.from_record({**entry, "gpu": "NVIDIA A100-SXM4-40GB", "compute": "8.0"})
        (trt_dir(run) / name).rename(trt_dir(run) / foreign.file)
        records["engines"][foreign.file] = {**entry, **foreign.as_record()}
    write_records(run, records)
    one_line_error(cli("export", str(run), "--trt", "--fp16", "--batch", "1,2,8", "--no-build"),
                   "it was built for NVIDIA A100-SXM4-40GB (compute 8.0)")  # fmt: skip
    one_line_error(cli("generate", PROMPTS[0], "--model", str(run), "--backend", "trt"),
                   f"run `t2vkit export {run} --trt --fp16 --batch 1,2,8` to build it")  # fmt: skip
    plans = build_engines(run, fp16=True, batch=(1, 2, 8), echo=lambda line: None)
    assert all(p.action == "build" and "A100" in p.reason for p in plans)
    result = cli("generate", PROMPTS[0], "--model", str(run), "--backend", "trt", "--out", str(tmp_path / "v.mp4"))
    assert result.returncode == 0, result.stderr


def test_bench_measures_trt(engines):
    from t2vkit.bench import run_bench

    report = run_bench(engines["aligned"], ("torch", "trt"), (1, 8), repeats=3, warmup=1, device="cuda", fp16=True)
    trt = report["backends"]["trt"]
    assert trt["status"] == "ok", trt
    assert trt["precision"] == "fp16" and trt["peak_gpu_mb"] > 0
    assert set(trt["batches"]["8"]["speedup_vs_torch"]) == {"text_encoder", "mapping", "decoder", "end_to_end"}
