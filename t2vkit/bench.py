"""``t2vkit bench``: generation latency, throughput, load time and peak memory per backend, side by side.

Each available backend is measured in its own fresh process (:mod:`t2vkit.bench_worker`), one after the
other, so neither its load time nor its peak memory is coloured by another backend. A backend that cannot
run here (no ONNX export, no TensorRT, no GPU) is reported as skipped with the reason, never left out.
The report is a plain dict (the ``--json`` file); :func:`speedups` adds each backend's ratio to PyTorch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from t2vkit import __version__
from t2vkit.bench_worker import Request
from t2vkit.checkpoint import read_config
from t2vkit.errors import T2VError

BACKENDS = ("torch", "onnx", "trt")
STAGES = ("align", "diffusion")


def default_threads() -> int:
    """The CPUs this process may run on (what both PyTorch and ONNX Runtime are given, for a fair race)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def unavailable(backend: str, run_dir: Path, device: str) -> str | None:
    """Why ``backend`` cannot run here (a reason naming the fix), or None. Cheap checks only; the worker
    finds the rest (a stale export, an engine for another GPU) and reports them the same way."""
    from t2vkit.exporters.manifest import MANIFEST_NAME, export_command, export_dir
    from t2vkit.exporters.onnx_runtime import cuda_device_present

    gpu = cuda_device_present()
    if backend == "torch" and importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed"
    if backend in ("torch", "onnx") and device == "cuda" and not gpu:
        return "--device cuda, but the CUDA driver sees no GPU here"
    if backend in ("onnx", "trt") and not (export_dir(run_dir) / MANIFEST_NAME).is_file():
        return f"no ONNX export in {export_dir(run_dir)}; run `{export_command(run_dir)}` first"
    if backend == "trt":
        from t2vkit.exporters.trt_runtime import trt_unavailable

        return trt_unavailable()
    return None


def check_request(run_dir: Path, backends: Sequence[str], batches: Sequence[int], repeats: int, warmup: int,
                  device: str, threads: int) -> str:  # fmt: skip
    """One clear error per bad option; returns the run's stage."""
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise T2VError(f"--backends takes a comma-separated subset of {','.join(BACKENDS)}, got {','.join(backends)}")
    if not batches or min(batches) < 1:
        raise T2VError(f"--batch takes batch sizes ≥ 1 such as 1,8, got {','.join(map(str, batches))}")
    if repeats < 1 or warmup < 0 or threads < 1:
        raise T2VError("--repeats and --threads must be at least 1, --warmup at least 0")
    if device not in ("cpu", "cuda"):
        raise T2VError(f"--device must be cpu or cuda, got {device!r}")
    stage = read_config(run_dir).get("stage")
    if stage not in STAGES:
        raise T2VError(f"{run_dir} is a stage-{stage!r} run; bench a stage-2 (align) or diffusion run, the ones "
                       "that generate from text")  # fmt: skip
    return stage


def run_worker(request: Request) -> dict[str, Any]:
    """Measure one backend in a fresh interpreter; its warnings go to our stderr. A crash becomes a
    ``failed`` entry with the worker's last error line (the other backends are still measured)."""
    with tempfile.TemporaryDirectory(prefix="t2vkit-bench-") as folder:
        request_path, result_path = Path(folder) / "request.json", Path(folder) / "result.json"
        request_path.write_text(json.dumps(asdict(request)))
        code = "from t2vkit.bench_worker import main; main()"
        done = subprocess.run([sys.executable, "-c", code, str(request_path), str(result_path)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        if done.returncode != 0 or not result_path.is_file():
            reason = lines[-1] if lines else f"exit status {done.returncode}"
            return {"status": "failed", "reason": reason}
        for line in lines:
            print(line, file=sys.stderr)
        return json.loads(result_path.read_text())


def speedups(report: dict[str, Any]) -> None:
    """Add ``speedup_vs_torch`` (PyTorch's median latency / this backend's) to every measured batch."""
    torch = report["backends"].get("torch", {})
    if torch.get("status") != "ok":
        return
    for name, result in report["backends"].items():
        if name == "torch" or result.get("status") != "ok":
            continue
        for batch, figures in result["batches"].items():
            reference = torch["batches"].get(batch)
            if reference is None:
                continue
            ratios = {c: reference["components"][c]["median_ms"] / v["median_ms"]
                      for c, v in figures["components"].items() if c in reference["components"]}  # fmt: skip
            ratios["end_to_end"] = reference["end_to_end"]["median_ms"] / figures["end_to_end"]["median_ms"]
            figures["speedup_vs_torch"] = {k: round(v, 3) for k, v in ratios.items()}


def run_bench(run_dir: str | Path, backends: Sequence[str] = BACKENDS, batches: Sequence[int] = (1, 8),
              repeats: int = 10, warmup: int = 2, device: str = "cpu", threads: int | None = None,
              options: dict[str, Any] | None = None, fp16: bool = False, cuda_graph: bool = False,
              on_start: Callable[[str], None] = lambda backend: None) -> dict[str, Any]:  # fmt: skip
    """Measure ``backends`` on ``run_dir`` (module docstring); ``options`` are the diffusion sampler's
    (``steps``, ``cfg``, ...); ``fp16`` picks TensorRT's fp16 engines and ``cuda_graph`` replays its UNet step
    as a CUDA graph; ``on_start(backend)`` is called before each measured backend."""
    run_dir = Path(run_dir)
    threads = threads or default_threads()
    stage = check_request(run_dir, backends, batches, repeats, warmup, device, threads)
    if options and stage != "diffusion":
        raise T2VError(f"{', '.join(options)}: options of the diffusion sampler, and {run_dir} is a {stage} run")
    report: dict[str, Any] = {
        "run": str(run_dir), "stage": stage, "device": device, "threads": threads, "repeats": repeats,
        "warmup": warmup, "batches": list(batches), "options": dict(options or {}), "fp16": fp16,
        "cuda_graph": cuda_graph,
        "t2vkit_version": __version__,
        "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                 "python": platform.python_version(), "platform": platform.platform()},
        "backends": {},
    }  # fmt: skip
    for backend in dict.fromkeys(backends):
        reason = unavailable(backend, run_dir, device)
        if reason is not None:
            report["backends"][backend] = {"status": "skipped", "reason": reason}
            continue
        on_start(backend)
        request = Request(str(run_dir), backend, list(batches), repeats, warmup, device, threads, dict(options or {}),
                          fp16, cuda_graph)  # fmt: skip
        report["backends"][backend] = run_worker(request)
    speedups(report)
    return report


__all__ = ["BACKENDS", "default_threads", "run_bench", "speedups", "unavailable"]
