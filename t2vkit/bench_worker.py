"""One backend's ``t2vkit bench`` measurements, taken in a fresh Python process.

``t2vkit bench`` starts one process per backend (:func:`t2vkit.bench.run_bench`), so each backend's load
time includes its own imports (the ONNX backend of a direct-sampler run never imports torch) and its peak
RSS is its own, not the maximum over whatever ran before it in the same process.

Each backend adapter turns a loaded pipeline into zero-argument calls at a batch size: one per component
(``text_encoder``: prompts → embeddings, tokenizer included; ``mapping`` or ``unet``: one mapping, or
one denoising step on a batch of noisy latents; ``decoder``: latents → float video) and one end to end
(prompts → uint8 frames, the same call ``generate`` makes). Every call is followed by the adapter's
``sync`` so GPU work is inside the measured interval.

Torch-free at import: torch is imported only by the adapters that need it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2vkit.errors import T2VError

#: the captions a batch is built from (cycled); their content changes the token length a little, not the work
PROMPTS = [f"digit {d} is moving {m}" for d in range(10) for m in ("up and down", "left and right")]
UNET_TIMESTEP = 500  # the timestep fed to the benchmarked UNet step (the network's cost does not depend on it)

Thunk = Callable[[], Any]


@dataclass
class Request:
    """What the parent asks one worker to measure."""

    run_dir: str
    backend: str
    batches: list[int]
    repeats: int
    warmup: int
    device: str
    threads: int
    options: dict[str, Any] = field(default_factory=dict)  # the diffusion sampler's (steps, ...)
    fp16: bool = False  # trt: the fp16 engines
    cuda_graph: bool = False  # trt: the UNet step replayed as a CUDA graph


def prompts_for(batch: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(batch)]


def summarize(seconds: list[float]) -> dict[str, float]:
    """Median, min and max of one measurement's repeats, in milliseconds."""
    return {"median_ms": round(statistics.median(seconds) * 1e3, 3), "min_ms": round(min(seconds) * 1e3, 3),
            "max_ms": round(max(seconds) * 1e3, 3)}  # fmt: skip


def time_calls(call: Thunk, sync: Thunk, repeats: int, warmup: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` unmeasured ones (first-shape set-up,
    allocator growth, lazy initialisation stay out of the figures)."""
    for _ in range(warmup):
        call()
        sync()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        seconds.append(time.perf_counter() - start)
    return seconds


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20) if sys.platform == "darwin" else peak / 1024, 1)


class DeviceMemory:
    """GPU memory in use on device 0 as the CUDA driver sees it (``cuMemGetInfo``), relative to a baseline
    taken with the primary context already created, sampled after every measured call: one yardstick for
    every backend (torch's allocator statistics do not see ONNX Runtime's arena or TensorRT's own memory)."""

    def __init__(self) -> None:
        self.driver = ctypes.CDLL("libcuda.so.1")
        device, context = ctypes.c_int(0), ctypes.c_void_p()
        self._check(self.driver.cuInit(0), "cuInit")
        self._check(self.driver.cuDeviceGet(ctypes.byref(device), 0), "cuDeviceGet")
        self._check(self.driver.cuDevicePrimaryCtxRetain(ctypes.byref(context), device), "cuDevicePrimaryCtxRetain")
        self._check(self.driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
        self.baseline = self.used()
        self.peak = 0

    @staticmethod
    def _check(code: int, call: str) -> None:
        if code != 0:
            raise T2VError(f"the CUDA driver failed {call} (error {code})")

    def used(self) -> int:
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        self._check(self.driver.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)), "cuMemGetInfo")
        return total.value - free.value

    def sample(self) -> None:
        self.peak = max(self.peak, self.used() - self.baseline)


# --------------------------------------------------------------------------- adapters


class TorchBackend:
    """The PyTorch pipeline (eager), as ``generate --backend torch`` runs it."""

    def __init__(self, request: Request) -> None:
        import torch

        from t2vkit.pipeline import Pipeline

        self.torch = torch
        torch.set_num_threads(request.threads)
        self.pipeline = Pipeline.from_run(request.run_dir, device=request.device, options=request.options)
        self.stage = self.pipeline.config["stage"]
        self.cuda = self.pipeline.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def calls(self, batch: int) -> dict[str, Thunk]:
        torch, p = self.torch, self.pipeline
        prompts = prompts_for(batch)
        with torch.no_grad():
            text = p.encoder.encode(prompts)
            latents = p.sampler.sample(text, n=1, seed=0).to(p.device)

        def no_grad(fn: Thunk) -> Thunk:
            def call() -> Any:
                with torch.no_grad():
                    return fn()

            return call

        found = {"text_encoder": no_grad(lambda: p.encoder.encode(prompts))}
        if self.stage == "align":
            found["mapping"] = no_grad(lambda: p.sampler.sample(text, n=1))
        else:
            model = p.sampler.model
            param = next(model.parameters())
            x_t = torch.randn(batch, *model.latent_shape, generator=torch.Generator().manual_seed(0)).to(param)
            t = torch.full((batch,), UNET_TIMESTEP, dtype=torch.long, device=param.device)
            tokens, mask = text.tokens.to(param), text.mask.to(param.device)
            found["unet"] = no_grad(lambda: model.unet(x_t, t, tokens, mask))
        found["decoder"] = no_grad(lambda: p.decoder.decode(latents))
        found["end_to_end"] = lambda: p.videos(prompts, n=1, seed=0)
        return found

    def memory(self) -> dict[str, Any]:
        if not self.cuda:
            return {}
        return {"torch_max_allocated_mb": round(self.torch.cuda.max_memory_allocated() / (1 << 20), 1)}

    def describe(self) -> dict[str, Any]:
        return {"torch": self.torch.__version__, "threads": self.torch.get_num_threads()}


class OnnxBackend:
    """The ONNX Runtime pipeline, as ``generate --backend onnx`` runs it (no torch for the direct sampler)."""

    def __init__(self, request: Request) -> None:
        from t2vkit.exporters.onnx_runtime import CPU, OnnxPipeline

        providers = [CPU] if request.device == "cpu" else None
        self.pipeline = OnnxPipeline.from_run(request.run_dir, providers=providers, options=request.options,
                                              threads=request.threads)  # fmt: skip
        if request.device == "cuda" and self.pipeline.providers == [CPU]:
            raise T2VError("ONNX Runtime has no working GPU provider here (CUDA or TensorRT)")
        self.stage = self.pipeline.stage
        self.threads = request.threads

    def sync(self) -> None:
        """Nothing to wait for: ``session.run`` returns host arrays, so the work is done when it returns."""

    def calls(self, batch: int) -> dict[str, Thunk]:
        import numpy as np

        p = self.pipeline
        prompts = prompts_for(batch)
        pooled, tokens, mask = p.encode(prompts)
        latents = np.ascontiguousarray(p.latents(prompts, n=1, seed=0), dtype=np.float32)
        found: dict[str, Thunk] = {"text_encoder": lambda: p.encode(prompts)}
        if self.stage == "align":
            found["mapping"] = lambda: p.sessions["mapping"].run(["latent"], {"text": pooled})
        else:
            shape = p.manifest.components["unet"]["inputs"][0]["shape"][1:]
            feeds = {"x_t": np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32),
                     "t": np.full((batch,), UNET_TIMESTEP, dtype=np.int64), "tokens": tokens, "mask": mask}  # fmt: skip
            found["unet"] = lambda: p.sessions["unet"].run(["prediction"], feeds)
        found["decoder"] = lambda: p.decode(latents, batch_size=batch)
        found["end_to_end"] = lambda: p.videos(prompts, n=1, seed=0)
        return found

    def memory(self) -> dict[str, Any]:
        return {}

    def describe(self) -> dict[str, Any]:
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__, "providers": self.pipeline.providers,
                "threads": self.threads}  # fmt: skip


def adapter(name: str) -> Callable[[Request], Any]:
    """The adapter class of a backend (trt's lives with the TensorRT runtime)."""
    if name == "torch":
        return TorchBackend
    if name == "onnx":
        return OnnxBackend
    if name == "trt":
        from t2vkit.exporters.trt_runtime import TrtBench

        return TrtBench
    raise T2VError(f"unknown backend {name!r}")


# --------------------------------------------------------------------------- the worker process


def measure(request: Request) -> dict[str, Any]:
    """Load the backend (timed, imports included), then time each call at each batch size."""
    gpu = DeviceMemory() if request.device == "cuda" or request.backend == "trt" else None
    began = time.perf_counter()
    backend = adapter(request.backend)(request)
    load_s = time.perf_counter() - began

    def sync() -> None:
        backend.sync()
        if gpu is not None:
            gpu.sample()

    batches: dict[str, Any] = {}
    for batch in request.batches:
        calls = backend.calls(batch)
        timed = {name: time_calls(call, sync, request.repeats, request.warmup) for name, call in calls.items()}
        end_to_end = timed.pop("end_to_end")
        batches[str(batch)] = {
            "components": {name: summarize(seconds) for name, seconds in timed.items()},
            "end_to_end": summarize(end_to_end),
            "videos_per_s": round(batch / statistics.median(end_to_end), 3),
        }
    memory = {"peak_rss_mb": peak_rss_mb(), **backend.memory()}
    if gpu is not None:
        memory["peak_gpu_mb"] = round(gpu.peak / (1 << 20), 1)  # CUDA driver: device memory in use above the context
    return {"status": "ok", "stage": backend.stage, "load_s": round(load_s, 3), **memory, **backend.describe(),
            "batches": batches}  # fmt: skip


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Native libraries print to file descriptor 1; the worker's stdout stays free of them."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: list[str] | None = None) -> None:
    """``main([REQUEST.json, RESULT.json])``: measure, write the result (or the reason the backend cannot run,
    as ``status: skipped``) as JSON. The backends' warnings reach stderr one line each, as in the CLI."""
    from t2vkit.log import setup_cli_logging

    request_path, result_path = argv if argv is not None else sys.argv[1:]
    request = Request(**json.loads(Path(request_path).read_text()))
    setup_cli_logging()
    with _quiet_stdout():
        try:
            result = measure(request)
        except T2VError as exc:
            result = {"status": "skipped", "reason": str(exc)}
    Path(result_path).write_text(json.dumps(result))
