"""`t2vkit bench` on the tiny exported runs of conftest.py: what it measures and reports, not how fast (speed
targets live in bench output and benchmarks/, never in timed tests)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from t2vkit.bench import run_bench, speedups, unavailable
from t2vkit.bench_worker import summarize
from t2vkit.errors import T2VError

T2VKIT = str(Path(sys.executable).parent / "t2vkit")
QUICK = {"repeats": 2, "warmup": 1, "threads": 1}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([T2VKIT, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})  # fmt: skip


def check_timings(figures: dict) -> None:
    assert set(figures) == {"median_ms", "min_ms", "max_ms"}
    assert 0 < figures["min_ms"] <= figures["median_ms"] <= figures["max_ms"]


def test_torch_and_onnx_side_by_side_with_trt_skipped_for_a_reason(aligned):
    report = run_bench(aligned, ("torch", "onnx", "trt"), (1, 2), **QUICK)
    assert report["stage"] == "align" and report["batches"] == [1, 2] and report["threads"] == 1
    backends = report["backends"]
    assert list(backends) == ["torch", "onnx", "trt"]
    for name in ("torch", "onnx"):
        result = backends[name]
        assert result["status"] == "ok", result
        assert result["load_s"] > 0 and result["peak_rss_mb"] > 50 and "peak_gpu_mb" not in result
        assert result["threads"] == 1
        for batch in ("1", "2"):
            figures = result["batches"][batch]
            assert list(figures["components"]) == ["text_encoder", "mapping", "decoder"]
            for timing in [*figures["components"].values(), figures["end_to_end"]]:
                check_timings(timing)
            median_s = figures["end_to_end"]["median_ms"] / 1e3
            assert figures["videos_per_s"] == pytest.approx(int(batch) / median_s, rel=1e-2)
    assert backends["onnx"]["providers"] == ["CPUExecutionProvider"]
    assert set(backends["onnx"]["batches"]["1"]["speedup_vs_torch"]) == {"text_encoder", "mapping", "decoder",
                                                                         "end_to_end"}  # fmt: skip
    assert "speedup_vs_torch" not in backends["torch"]["batches"]["1"]
    reason = unavailable("trt", aligned, "cpu")
    if reason is None:
        pytest.skip("TensorRT and a GPU are present: trt was measured, not skipped")
    assert backends["trt"] == {"status": "skipped", "reason": reason}
    assert "TensorRT" in reason


def test_a_diffusion_run_is_benched_by_its_unet_step(diffusion):
    report = run_bench(diffusion, ("onnx",), (1,), options={"steps": 1}, **QUICK)
    result = report["backends"]["onnx"]
    assert result["status"] == "ok", result
    assert list(result["batches"]["1"]["components"]) == ["text_encoder", "unet", "decoder"]
    assert report["options"] == {"steps": 1}


def test_a_run_without_an_export_has_onnx_skipped_naming_the_command(aligned, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(aligned, bare, ignore=shutil.ignore_patterns("onnx"))
    report = run_bench(bare, ("onnx", "trt"), (1,), **QUICK)
    for name in ("onnx", "trt"):
        assert report["backends"][name]["status"] == "skipped"
    assert f"run `t2vkit export {bare}` first" in report["backends"]["onnx"]["reason"]


def test_a_stale_export_is_skipped_with_the_workers_reason(aligned, tmp_path):
    run = Path(shutil.copytree(aligned, tmp_path / "run"))
    (run / "onnx" / "decoder.onnx").write_bytes(b"not the exported file")
    result = run_bench(run, ("onnx",), (1,), **QUICK)["backends"]["onnx"]
    assert result["status"] == "skipped" and "does not match the sha256 in its manifest" in result["reason"]


def test_speedups_compare_medians_with_torch():
    def entry(ms: float) -> dict:
        figures = summarize([ms / 1e3])
        return {"status": "ok", "batches": {"1": {"components": {"decoder": figures}, "end_to_end": figures}}}

    report = {"backends": {"torch": entry(30.0), "onnx": entry(10.0), "trt": {"status": "skipped", "reason": "x"}}}
    speedups(report)
    assert report["backends"]["onnx"]["batches"]["1"]["speedup_vs_torch"] == {"decoder": 3.0, "end_to_end": 3.0}


def test_bench_command_prints_tables_and_writes_json(aligned, tmp_path):
    out = tmp_path / "report" / "bench.json"
    result = cli("bench", str(aligned), "--backends", "torch,onnx,trt", "--batch", "1", "--repeats", "1",
                 "--warmup", "0", "--threads", "1", "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert [report["backends"][b]["status"] for b in ("torch", "onnx")] == ["ok", "ok"]
    for text in ("latency in ms", "text encoder", "end to end", "videos/s", "load time and peak memory", "onnx"):
        assert text in result.stdout
    if report["backends"]["trt"]["status"] == "skipped":
        assert 'pip install "t2vkit[gpu]"' in result.stdout or "NVIDIA GPU" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--backends", "torch,tensorflow"), "--backends takes a comma-separated subset of torch,onnx,trt"),
        (("--batch", "1,x"), "--batch takes comma-separated whole numbers"),
        (("--batch", "0"), "--batch takes batch sizes ≥ 1"),
        (("--repeats", "0"), "--repeats and --threads must be at least 1"),
        (("--device", "tpu"), "--device must be cpu or cuda"),
    ],
)
def test_bad_bench_options_are_one_clear_error(aligned, args, message):
    result = cli("bench", str(aligned), *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and message in lines[0], result.stderr


def test_only_generating_runs_can_be_benched(stage1, aligned):
    with pytest.raises(T2VError, match=r"is a stage-'video' run; bench a stage-2 \(align\) or diffusion run"):
        run_bench(stage1, ("torch",), (1,), **QUICK)
    with pytest.raises(T2VError, match="steps: options of the diffusion sampler"):
        run_bench(aligned, ("torch",), (1,), options={"steps": 2}, **QUICK)
