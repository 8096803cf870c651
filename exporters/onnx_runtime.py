"""``generate --backend onnx``: a run's exported ONNX files in ONNX Runtime, tokenizer from ``tokenizers``.

:class:`OnnxPipeline` has :class:`t2vkit.pipeline.Pipeline`'s contract (``videos(prompts, n, seed)`` →
uint8 ``[P·n, T, H, W, C]``, prompt 0's first, the same prompt errors and truncation warning) and reads
only ``RUN_DIR/onnx`` (verified against its manifest) and the run's checkpoints' hashes.

The direct sampler (stage align) runs on numpy, onnxruntime and tokenizers alone: this module and what
it imports at the top never import torch. The diffusion sampler keeps its loop in torch (DDIM from
diffusers, classifier-free guidance, MG sampling: :func:`t2vkit.plugins.samplers.diffusion.draw_latents`,
the very code the torch backend runs) and runs each UNet step in ONNX Runtime; torch is imported
only when such a run is loaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from t2vkit.errors import CheckpointError, T2VError
from t2vkit.fsutil import cache_root
from t2vkit.log import log
from t2vkit.prompts import check_prompts

from .manifest import Manifest, export_command, load_manifest

CPU = "CPUExecutionProvider"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")  # preferred first
ORT_DEFAULT_LOG_SEVERITY = 2  # ONNX Runtime's own default (warnings)


# --------------------------------------------------------------------------- providers


def cuda_device_present() -> bool:
    """Whether the CUDA driver sees a GPU. onnxruntime-gpu lists its CUDA and TensorRT providers on any
    machine, so their presence says nothing; the driver is asked directly (no ONNX Runtime error spam)."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        return driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    return False


def candidate_providers(requested: Sequence[str] | None = None) -> list[str]:
    """``requested`` if ONNX Runtime has them all; by default TensorRT, CUDA (when a GPU is present), then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested is not None:
        missing = [p for p in requested if p not in available]
        if missing or not requested:
            raise T2VError(f"ONNX Runtime here has no {missing[0] if missing else 'provider given'}; "
                           f"it has {', '.join(available)}")  # fmt: skip
        return list(requested)
    if not cuda_device_present():
        return [CPU]
    return [p for p in GPU_PROVIDERS if p in available] + [CPU]


def _provider_options(provider: str) -> dict[str, str]:
    if provider == "TensorrtExecutionProvider":  # fp32 engines, cached between runs (they take minutes to build)
        cache = cache_root() / "onnxruntime-tensorrt"
        return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache)}  # fmt: skip
    return {}


@contextlib.contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """Silence ONNX Runtime while a GPU provider may fail to load: the fallback is reported once, by us."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        ort.set_default_logger_severity(ORT_DEFAULT_LOG_SEVERITY)


def open_session(path: Path, providers: Sequence[str], threads: int | None, run_dir: Path) -> Any:
    """An InferenceSession of ``path``; an unreadable model is one clear error naming the fix."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # "nodes not assigned to the preferred provider" and the like are normal
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    chosen = [(p, _provider_options(p)) for p in providers]
    quiet = _quiet_onnxruntime() if any(p != CPU for p in providers) else contextlib.nullcontext()
    try:
        with quiet:
            return ort.InferenceSession(str(path), options, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own pybind exception types (InvalidProtobuf, Fail, ...)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a model ONNX Runtime can load ({reason}); re-run "
                              f"`{export_command(run_dir)} --force`") from None  # fmt: skip


# --------------------------------------------------------------------------- text


class PromptTokenizer:
    """The exported ``tokenizer.json`` with the torch encoder's settings: truncation to ``max_length`` (one
    warning naming how many texts were cut, as :class:`HFTextEncoder` gives) and padding to the longest."""

    def __init__(self, path: Path, settings: Mapping[str, Any]) -> None:
        from tokenizers import Tokenizer

        self.name, self.max_length = settings["name"], int(settings["max_length"])
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.enable_truncation(self.max_length, direction=settings.get("truncation_side", "right"))
        self.tokenizer.enable_padding(direction=settings.get("padding_side", "right"), pad_id=int(settings["pad_id"]),
                                      pad_token=settings["pad_token"])  # fmt: skip

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``input_ids`` and ``attention_mask``, int64 ``[B, L]``."""
        encodings = self.tokenizer.encode_batch(list(texts))
        cut = sum(bool(e.overflowing) for e in encodings)  # tokens beyond max_length go to `overflowing`
        if cut:
            log.warning(f"{cut} of {len(texts)} text(s) exceed the {self.name} encoder's limit of "
                        f"{self.max_length} tokens and were truncated")  # fmt: skip
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask


def encode_texts(session: Any, tokenizer: PromptTokenizer, texts: Sequence[str],
                 batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The exported text encoder on ``texts``: pooled ``[B, d]``, token states ``[B, L, d]`` (zero on padding)
    and mask ``[B, L]`` bool, run in chunks of ``batch_size`` all padded to the longest text."""
    ids, mask = tokenizer(texts)
    outputs = [session.run(["pooled", "tokens"], {"input_ids": ids[i : i + batch_size],
                                                  "attention_mask": mask[i : i + batch_size]})
               for i in range(0, len(ids), batch_size)]  # fmt: skip
    pooled, tokens = (np.concatenate(parts) for parts in zip(*outputs, strict=True))
    return pooled, tokens, mask.astype(bool)


def to_uint8(video: np.ndarray) -> np.ndarray:
    """Float ``[B, C, T, H, W]`` in [-1, 1] → uint8 ``[B, T, H, W, C]``, rounded as ``tensor_to_clip`` does."""
    x = (np.clip(video.astype(np.float32), -1.0, 1.0) + 1.0) / 2.0
    return np.moveaxis(np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8), 1, -1)


# --------------------------------------------------------------------------- the pipeline


class OnnxPipeline:
    """Prompt → video with a run's ONNX export; see the module docstring."""

    def __init__(self, manifest: Manifest, sessions: dict[str, Any], tokenizer: PromptTokenizer,
                 providers: list[str], diffusion: Any = None) -> None:  # fmt: skip
        self.manifest, self.sessions, self.tokenizer = manifest, sessions, tokenizer
        self.providers, self.diffusion = providers, diffusion

    @property
    def stage(self) -> str:
        return self.manifest.stage

    @classmethod
    def from_run(cls, run_dir: str | Path, providers: Sequence[str] | None = None, sampler: str | None = None,
                 options: Mapping[str, Any] | None = None, threads: int | None = None) -> OnnxPipeline:  # fmt: skip
        """Load ``RUN_DIR/onnx`` (checked against its manifest and the run's checkpoints). ``providers``:
        ONNX Runtime's, in order (default: TensorRT / CUDA where they work, else CPU); ``options``: the
        diffusion sampler's (``steps``, ``cfg``, ...); ``threads``: ONNX Runtime's intra-op threads."""
        run_dir = Path(run_dir)
        manifest = load_manifest(run_dir)
        manifest.check_sampling(sampler, options)
        candidates = candidate_providers(providers)
        sessions: dict[str, Any] = {}
        for name in manifest.components:
            sessions[name] = open_session(manifest.path(name), candidates, threads, run_dir)
            working = sessions[name].get_providers()
            if any(p not in working for p in candidates):
                candidates = _fall_back(candidates, working, providers is not None)
        tokenizer = PromptTokenizer(manifest.path("tokenizer"), manifest.text_encoder)
        diffusion = None
        if "unet" in sessions:
            diffusion = DiffusionLoop(manifest, OnnxUnetStep(sessions["unet"]), options or {})
        return cls(manifest, sessions, tokenizer, candidates, diffusion)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pooled ``[B, d]``, token states ``[B, L, d]`` zeroed on padding, mask ``[B, L]`` bool), in chunks
        of ``batch_size`` texts (all padded to the longest, as the torch encoder pads its output)."""
        return encode_texts(self.sessions["text_encoder"], self.tokenizer, texts, batch_size)

    def latents(self, texts: Sequence[str], n: int = 1, seed: int | None = None) -> np.ndarray:
        """``[B·n, *latent_shape]``, text 0's ``n`` first."""
        pooled, tokens, mask = self.encode(texts)
        if self.diffusion is not None:
            import torch

            return self.diffusion.sample(torch.from_numpy(tokens), torch.from_numpy(mask), n, seed).numpy()
        (latent,) = self.sessions["mapping"].run(["latent"], {"text": pooled})
        return np.repeat(latent, n, axis=0)  # the mapping is deterministic: the n copies are equal

    def decode(self, latents: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """G in chunks of ``batch_size``: float videos ``[N, C, T, H, W]``, unclamped."""
        chunks = [self.sessions["decoder"].run(["video"], {"latent": latents[i : i + batch_size]})[0]
                  for i in range(0, len(latents), batch_size)]  # fmt: skip
        return np.concatenate(chunks)

    def videos(self, prompts: Sequence[str], n: int = 1, seed: int | None = None,
               batch_size: int = 16) -> np.ndarray:  # fmt: skip
        """uint8 videos ``[len(prompts) * n, T, H, W, C]``, prompt 0's ``n`` first."""
        prompts = check_prompts(prompts)
        if n < 1:
            raise T2VError(f"--num must be at least 1, got {n}")
        latents = np.ascontiguousarray(self.latents(prompts, n=n, seed=seed), dtype=np.float32)
        return to_uint8(self.decode(latents, batch_size))


class DiffusionLoop:
    """The diffusion sampler around an exported UNet step: DiffusionSampler.sample's draw_latents (DDIM from diffusers,
    classifier-free guidance, MG sampling), fed the exported empty caption and schedule. ``step`` is a
    ``UNetFn`` on torch tensors of ``device`` (ONNX Runtime's or a TensorRT engine's). Imports torch and
    diffusers (only diffusion runs get here)."""

    def __init__(self, manifest: Manifest, step: Any, options: Mapping[str, Any], device: str = "cpu") -> None:
        import torch

        from t2vkit import registry
        from t2vkit.config import from_dict
        from t2vkit.pipeline import run_sampling

        factory = registry.get("sampler", manifest.sampler).factory
        recorded = manifest.data["diffusion"]
        config = from_dict(factory.Model.Config, recorded["denoiser"], where=f"{manifest.folder} denoiser")
        with torch.device("meta"):  # weightless: it lends its schedule recipe, so both backends share it
            self.model = factory.Model(config)
        # the export recorded the run's effective sampling defaults; options go over them, as in Pipeline.from_run
        self.sampling = run_sampling(recorded, factory, manifest.sampler, dict(options))
        factory(self.sampling, self.model)  # the sampler's own checks of its options
        self.device = torch.device(device)
        with np.load(manifest.path("null_text")) as null:
            self.null_tokens = torch.from_numpy(null["tokens"]).to(self.device)
            self.null_mask = torch.from_numpy(null["mask"]).to(self.device)
        self.step = step

    def sample(self, tokens: Any, mask: Any, n: int, seed: int | None) -> Any:
        """Stage-1 latents ``[B·n, C, T, H, W]`` (a tensor on ``device``) as ``DiffusionSampler.sample`` draws
        them for this seed, from token states ``[B, L, d]`` and mask ``[B, L]`` (tensors on ``device``)."""
        from t2vkit.plugins.samplers.diffusion import draw_latents

        config = self.model.config
        if getattr(config, "frame_tokens", False) and tokens.shape[1] > config.max_text_len:
            raise T2VError(f"the frame-wise token generator takes up to {config.max_text_len} tokens "
                           f"(denoiser.max_text_len), got {tokens.shape[1]}")  # fmt: skip
        return draw_latents(self.model, self.step, self.sampling, tokens, mask, self.null_tokens, self.null_mask,
                            n, seed)  # fmt: skip


class OnnxUnetStep:
    """One UNet evaluation in ONNX Runtime with the torch UNet's signature (a ``UNetFn`` on CPU tensors)."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def __call__(self, x_t: Any, t: Any, tokens: Any, mask: Any) -> Any:
        import torch

        feeds = {"x_t": x_t.float().numpy(), "t": t.long().numpy(), "tokens": tokens.float().numpy(),
                 "mask": mask.bool().numpy()}  # fmt: skip
        return torch.from_numpy(self.session.run(["prediction"], feeds)[0])


def _fall_back(candidates: list[str], working: list[str], explicit: bool) -> list[str]:
    """The providers a session actually got, after a GPU provider failed to load (one warning)."""
    lost = [p for p in candidates if p not in working]
    if explicit:
        raise T2VError(f"ONNX Runtime could not start {', '.join(lost)} here (missing GPU libraries?)")
    log.warning(f"ONNX Runtime lists {', '.join(lost)} but cannot start it here; using {', '.join(working)}")
    return list(working)


__all__ = ["DiffusionLoop", "OnnxPipeline", "PromptTokenizer", "candidate_providers", "cuda_device_present", "to_uint8"]
