"""``generate --backend trt``: TensorRT engines for the mapping, the UNet step and the decoder; the text encoder
in ONNX Runtime (CUDA where it works); buffers are torch CUDA tensors on torch's current stream.

:class:`TrtPipeline` has :class:`t2vkit.pipeline.Pipeline`'s contract (``videos(prompts, n, seed)`` → uint8
``[P·n, T, H, W, C]``). The engines must have been built on this GPU model with this TensorRT from the
current ONNX export (``t2vkit export RUN --trt``); anything else is one clear error naming that command.
A diffusion run draws with the same loop as the other backends (:class:`DiffusionLoop`), so a seed gives
the same starting noise; ``cuda_graph`` replays the UNet step as a CUDA graph, captured once per shape
(the shape is fixed through one sampling loop).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from t2vkit.errors import T2VError
from t2vkit.log import log
from t2vkit.prompts import check_prompts

from .manifest import Manifest, load_manifest
from .onnx_runtime import CPU, DiffusionLoop, PromptTokenizer, cuda_device_present, encode_texts, open_session, to_uint8
from .trt_engine import EngineError, Platform, select_engines

_LOGGER: Any = None


def trt_unavailable() -> str | None:
    """Why TensorRT cannot run here (naming what to install), or None. Cheap: imports nothing."""
    if importlib.util.find_spec("tensorrt") is None:
        return 'TensorRT is not installed (pip install "t2vkit[gpu]" on a machine with an NVIDIA GPU)'
    if not cuda_device_present():
        return "TensorRT needs an NVIDIA GPU and the CUDA driver sees none here"
    return None


def require_tensorrt(what: str = "--backend trt", instead: str = "; use --backend onnx or torch") -> Any:
    """The ``tensorrt`` module, with a GPU and a CUDA build of torch to run it; one clear error otherwise,
    saying that ``what`` cannot run and why (then ``instead``)."""
    reason = trt_unavailable()
    if reason is not None:
        raise EngineError(f"{what} cannot run here: {reason}{instead}")
    import torch

    if not torch.cuda.is_available():
        raise EngineError(f"{what} needs a CUDA build of PyTorch (TensorRT's buffers are torch tensors); this one "
                          f"is {torch.__version__} without CUDA{instead}")  # fmt: skip
    import tensorrt as trt

    return trt


def trt_logger() -> Any:
    """One TensorRT logger per process (TensorRT asks for that), warnings and worse."""
    global _LOGGER
    if _LOGGER is None:
        trt = require_tensorrt()
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def current_platform() -> Platform:
    """This machine's GPU (torch's current device) and TensorRT version, as engines are keyed by them."""
    trt = require_tensorrt()
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return Platform(props.name, f"{props.major}.{props.minor}", trt.__version__)


def torch_dtype(trt_dtype: Any) -> Any:
    import tensorrt as trt
    import torch

    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int64: torch.int64,
             trt.bool: torch.bool, trt.int8: torch.int8}  # fmt: skip
    if trt_dtype not in table:
        raise EngineError(f"engine tensors of type {trt_dtype} are not supported")
    return table[trt_dtype]


# --------------------------------------------------------------------------- one engine


class EngineRunner:
    """A deserialized engine and its execution context: ``run({input: tensor})`` → ``{output: tensor}`` (CUDA
    tensors), batches above the profile's MAX split into chunks. With ``cuda_graph``, each input shape's
    enqueue is captured once as a CUDA graph and replayed (a capture TensorRT refuses falls back, once
    said)."""

    def __init__(self, engine: bytes, where: Path | str, fix: str, cuda_graph: bool = False) -> None:
        trt = require_tensorrt()
        import torch

        self.torch, self.where = torch, str(where)
        self.engine = trt.Runtime(trt_logger()).deserialize_cuda_engine(engine)
        if self.engine is None:
            raise EngineError(f"{where} is not an engine TensorRT {trt.__version__} can load; {fix}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: torch_dtype(self.engine.get_tensor_dtype(n)) for n in names}
        low, _, high = self.engine.get_tensor_profile_shape(self.inputs[0], 0)
        self.min_batch, self.max_batch = int(low[0]), int(high[0])
        self.cuda_graph = cuda_graph
        self.graphs: dict[tuple, tuple[Any, dict[str, Any], dict[str, Any]]] = {}

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        batch = int(next(iter(feeds.values())).shape[0])
        if batch < self.min_batch:
            raise EngineError(f"{self.where} takes batches of at least {self.min_batch}, got {batch}; rebuild it "
                              f"with a smaller MIN in --batch")  # fmt: skip
        if batch <= self.max_batch:
            return self._run(feeds)
        if 0 < batch % self.max_batch < self.min_batch:
            raise EngineError(f"{self.where} takes batches of {self.min_batch} to {self.max_batch}; {batch} does not "
                              "split into such chunks: rebuild it with --batch 1,OPT,MAX")  # fmt: skip
        parts = [self._run({n: t[i : i + self.max_batch] for n, t in feeds.items()})
                 for i in range(0, batch, self.max_batch)]  # fmt: skip
        return {n: self.torch.cat([p[n] for p in parts]) for n in self.outputs}

    def bind(self, feeds: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Point the context at ``feeds`` (converted to the engine's dtypes on the GPU) and fresh outputs."""
        torch = self.torch
        inputs = {n: feeds[n].to("cuda", self.dtypes[n]).contiguous() for n in self.inputs}
        for name, tensor in inputs.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.outputs:
            outputs[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self.dtypes[name],
                                        device="cuda")  # fmt: skip
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        return inputs, outputs

    def enqueue(self, stream: Any) -> None:
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineError(f"TensorRT failed to run {self.where}")

    def _run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        if self.cuda_graph:
            return self._replay(feeds)
        _, outputs = self.bind(feeds)  # the inputs live on the stream's allocator until the enqueue is done
        self.enqueue(self.torch.cuda.current_stream())
        return outputs

    def _replay(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        key = tuple((n, tuple(feeds[n].shape)) for n in self.inputs)
        if key not in self.graphs:
            captured = self._capture(feeds)
            if captured is None:
                self.cuda_graph = False
                return self._run(feeds)
            self.graphs[key] = captured
        graph, inputs, outputs = self.graphs[key]
        for name, tensor in inputs.items():
            tensor.copy_(feeds[name])
        graph.replay()
        return {n: t.clone() for n, t in outputs.items()}

    def _capture(self, feeds: Mapping[str, Any]) -> tuple[Any, dict[str, Any], dict[str, Any]] | None:
        torch = self.torch
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            inputs, outputs = self.bind(feeds)
            self.enqueue(stream)  # TensorRT sets itself up on the first enqueue, which must not be captured
            stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, stream=stream):
                    self.enqueue(stream)
            except RuntimeError as exc:
                log.warning(f"{self.where} cannot be captured as a CUDA graph ({exc}); running it without")
                return None
        torch.cuda.current_stream().wait_stream(stream)
        return graph, inputs, outputs


class TrtUnetStep:
    """The UNet engine with the torch UNet's signature (a ``UNetFn`` on CUDA tensors)."""

    def __init__(self, runner: EngineRunner) -> None:
        self.runner = runner

    def __call__(self, x_t: Any, t: Any, tokens: Any, mask: Any) -> Any:
        return self.runner.run({"x_t": x_t, "t": t, "tokens": tokens, "mask": mask})["prediction"]


# --------------------------------------------------------------------------- the pipeline


class TrtPipeline:
    """Prompt → video with a run's TensorRT engines; see the module docstring."""

    def __init__(self, manifest: Manifest, text_session: Any, tokenizer: PromptTokenizer,
                 runners: dict[str, EngineRunner], engines: dict[str, Any],
                 diffusion: DiffusionLoop | None) -> None:  # fmt: skip
        self.manifest, self.text_session, self.tokenizer = manifest, text_session, tokenizer
        self.runners, self.engines, self.diffusion = runners, engines, diffusion

    @property
    def stage(self) -> str:
        return self.manifest.stage

    @classmethod
    def from_run(cls, run_dir: str | Path, fp16: bool | None = None, cuda_graph: bool = False,
                 sampler: str | None = None, options: Mapping[str, Any] | None = None,
                 threads: int | None = None) -> TrtPipeline:  # fmt: skip
        """Load ``RUN_DIR/trt``'s engines for this GPU (``fp16`` None: the precision built last) and the text
        encoder from ``RUN_DIR/onnx``; ``options`` are the diffusion sampler's."""
        require_tensorrt()
        import onnxruntime as ort

        run_dir = Path(run_dir)
        manifest = load_manifest(run_dir)
        manifest.check_sampling(sampler, options)
        engines = select_engines(run_dir, manifest, current_platform(), fp16)
        runners = {}
        for name, (key, path) in engines.items():
            fix = f"run `t2vkit export {run_dir} --trt{' --fp16' if key.precision == 'fp16' else ''} --force`"
            runners[name] = EngineRunner(path.read_bytes(), path, fix, cuda_graph=cuda_graph and name == "unet")
        providers = [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()] + [CPU]
        text_session = open_session(manifest.path("text_encoder"), providers, threads, run_dir)
        tokenizer = PromptTokenizer(manifest.path("tokenizer"), manifest.text_encoder)
        diffusion = None
        if "unet" in runners:
            diffusion = DiffusionLoop(manifest, TrtUnetStep(runners["unet"]), options or {}, device="cuda")
        return cls(manifest, text_session, tokenizer, runners, {n: k for n, (k, _) in engines.items()}, diffusion)

    def encode(self, texts: Sequence[str]) -> tuple[Any, Any, Any]:
        """(pooled, token states, mask) as CUDA tensors."""
        import torch

        pooled, tokens, mask = encode_texts(self.text_session, self.tokenizer, texts)
        return tuple(torch.from_numpy(x).cuda() for x in (pooled, tokens, mask))  # type: ignore[return-value]

    def latents(self, texts: Sequence[str], n: int = 1, seed: int | None = None) -> Any:
        """``[B·n, *latent_shape]`` on the GPU, text 0's ``n`` first."""
        pooled, tokens, mask = self.encode(texts)
        if self.diffusion is not None:
            return self.diffusion.sample(tokens, mask, n, seed)
        latent = self.runners["mapping"].run({"text": pooled})["latent"]
        return latent.repeat_interleave(n, dim=0)  # the mapping is deterministic: the n copies are equal

    def decode(self, latents: Any) -> Any:
        """G: float videos ``[N, C, T, H, W]`` on the GPU, unclamped."""
        return self.runners["decoder"].run({"latent": latents})["video"]

    def videos(self, prompts: Sequence[str], n: int = 1, seed: int | None = None) -> np.ndarray:
        """uint8 videos ``[len(prompts) * n, T, H, W, C]``, prompt 0's ``n`` first."""
        prompts = check_prompts(prompts)
        if n < 1:
            raise T2VError(f"--num must be at least 1, got {n}")
        video = self.decode(self.latents(prompts, n=n, seed=seed).float().contiguous())
        return to_uint8(video.float().cpu().numpy())


# --------------------------------------------------------------------------- bench


class TrtBench:
    """``t2vkit bench``'s adapter (see :mod:`t2vkit.bench_worker`): the TensorRT pipeline's calls at a batch."""

    def __init__(self, request: Any) -> None:
        import torch

        self.torch = torch
        self.pipeline = TrtPipeline.from_run(request.run_dir, fp16=request.fp16, cuda_graph=request.cuda_graph,
                                             options=request.options, threads=request.threads)  # fmt: skip
        self.stage = self.pipeline.stage
        self.cuda_graph = request.cuda_graph

    def sync(self) -> None:
        self.torch.cuda.synchronize()

    def calls(self, batch: int) -> dict[str, Any]:
        from t2vkit.bench_worker import UNET_TIMESTEP, prompts_for

        torch, p = self.torch, self.pipeline
        prompts = prompts_for(batch)
        pooled, tokens, mask = p.encode(prompts)
        latents = p.latents(prompts, n=1, seed=0).float().contiguous()
        found = {"text_encoder": lambda: p.encode(prompts)}
        if self.stage == "align":
            found["mapping"] = lambda: p.runners["mapping"].run({"text": pooled})
        else:
            shape = p.manifest.components["unet"]["inputs"][0]["shape"][1:]
            feeds = {"x_t": torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0)).cuda(),
                     "t": torch.full((batch,), UNET_TIMESTEP, dtype=torch.long, device="cuda"), "tokens": tokens,
                     "mask": mask}  # fmt: skip
            found["unet"] = lambda: p.runners["unet"].run(feeds)
        found["decoder"] = lambda: p.decode(latents)
        found["end_to_end"] = lambda: p.videos(prompts, n=1, seed=0)
        return found

    def memory(self) -> dict[str, Any]:
        return {"torch_max_allocated_mb": round(self.torch.cuda.max_memory_allocated() / (1 << 20), 1)}

    def describe(self) -> dict[str, Any]:
        import tensorrt as trt

        key = next(iter(self.pipeline.engines.values()))
        return {"tensorrt": trt.__version__, "precision": key.precision, "gpu": key.gpu,
                "batch_profile": list(key.batch), "cuda_graph": self.cuda_graph}  # fmt: skip


__all__ = ["EngineRunner", "TrtBench", "TrtPipeline", "current_platform", "require_tensorrt", "trt_unavailable"]
