"""``t2vkit export``: a trained run's generation path as ONNX files, each checked against PyTorch.

One file per component that runs at generation time (see :func:`components`): ``text_encoder``
(token ids → pooled embedding and token states), ``mapping`` (pooled text → z_v, stage align),
``unet`` (one denoising step, stage diffusion) and ``decoder`` (z_v → video). Every axis that varies
at generation time is dynamic: the batch everywhere, the token length for the encoder and the UNet.

Nothing is written unless every component passes ``onnx.checker`` and matches PyTorch in ONNX Runtime
(CPU) within the tolerance at two batch sizes: the export is built in a staging folder beside
``RUN_DIR/onnx`` that replaces it only at the end (:func:`t2vkit.fsutil.staged_directory`).

The exporter is PyTorch's TorchScript-based one (``dynamo=False``): the dynamo exporter needs
``onnxscript``, which t2vkit does not depend on, and the traced graphs here have no data-dependent
control flow (the UNet is written for it; the transformers encoders are traced with padded inputs, so
their attention mask is always applied).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from t2vkit import __version__
from t2vkit.checkpoint import read_config
from t2vkit.config import to_dict
from t2vkit.errors import T2VError
from t2vkit.fsutil import atomic_path, sha256_file, staged_directory

from .manifest import (
    checkpoint_source,
    encoder_source,
    export_command,
    export_dir,
    load_manifest,
    new_manifest,
    write_manifest,
)

MIN_OPSET = 17  # LayerNormalization as one op (TensorRT needs it for fp16)
CHECK_BATCHES = (1, 3)  # the batch sizes every component is compared with PyTorch at
TRACE_BATCH = 2  # traced at a batch that is neither checked nor 1, so no size-1 broadcast is baked in
TOKEN_LENGTHS = {1: 7, 2: 9, 3: 12}  # token lengths of the random inputs, per batch size


class ExportError(T2VError):
    """An export that cannot be made or does not match PyTorch; nothing was written."""


#: random inputs of a component at a batch size, drawn from the generator
Example = Callable[[int, torch.Generator], tuple[torch.Tensor, ...]]


@dataclass
class Component:
    """One ONNX file: the module whose ``forward`` is exported, its I/O names and axes, and its source."""

    name: str
    module: nn.Module
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    example: Example
    source: dict[str, str]

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"


@dataclass
class ExportResult:
    folder: Path
    kept: bool  # an up-to-date export was already there and left alone
    errors: dict[str, dict[int, dict[str, float]]]  # component → batch → output → max abs error


# --------------------------------------------------------------------------- the exported graphs


class TextEncoderGraph(nn.Module):
    """``(input_ids, attention_mask) -> (pooled, tokens)``, token states zeroed on padding as ``encode`` does."""

    def __init__(self, encoder: Any) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, states = self.encoder._forward({"input_ids": input_ids, "attention_mask": attention_mask})
        return pooled, states * attention_mask[..., None].to(states.dtype)


class MappingGraph(nn.Module):
    """The aligner's generation path, pooled text ``[B, d_t]`` → ``z_v [B, *latent_shape]``."""

    def __init__(self, aligner: Any) -> None:
        super().__init__()
        self.aligner = aligner

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.aligner.text_to_latent(text)


class DecoderGraph(nn.Module):
    """G: ``z_v`` → video ``[B, C, T, H, W]``, unclamped (the pipeline clamps afterwards)."""

    def __init__(self, decoder: Any) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder.decode(z)


# --------------------------------------------------------------------------- random inputs


def _padded_mask(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``[B, L]`` bool: row 0 all real, the others a random number (≥ 1) of real tokens, then padding."""
    real = torch.randint(1, length + 1, (batch,), generator=generator)
    real[0] = length
    return torch.arange(length)[None] < real[:, None]


def _text_example(vocab: int, max_length: int) -> Example:
    def example(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        length = min(TOKEN_LENGTHS.get(batch, 8), max_length)
        ids = torch.randint(0, vocab, (batch, length), generator=generator)
        return ids, _padded_mask(batch, length, generator).long()

    return example


def _normal_example(*shape: int) -> Example:
    def example(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, *shape, generator=generator),)

    return example


def _unet_example(model: Any) -> Example:
    c = model.config

    def example(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        length = TOKEN_LENGTHS.get(batch, 8)
        if getattr(c, "frame_tokens", False):  # the UNet's token generator spans max_text_len positions
            length = min(length, c.max_text_len)
        x_t = torch.randn(batch, *model.latent_shape, generator=generator)
        t = torch.randint(0, c.num_train_timesteps, (batch,), generator=generator)
        tokens = torch.randn(batch, length, c.text_dim, generator=generator)
        return x_t, t, tokens, _padded_mask(batch, length, generator)

    return example


# --------------------------------------------------------------------------- components of a run


def components(pipeline: Any, run_dir: Path) -> list[Component]:
    """The ONNX files a loaded :class:`t2vkit.pipeline.Pipeline` exports to, in generation order."""
    from t2vkit.plugins.encoders._hf import HFTextEncoder

    encoder, sampler, decoder = pipeline.encoder, pipeline.sampler, pipeline.decoder
    if not isinstance(encoder, HFTextEncoder) or not hasattr(encoder.tokenizer, "backend_tokenizer"):
        raise ExportError(f"the {pipeline.config['encoder']['name']} text encoder cannot be exported: the ONNX "
                          "export takes transformers encoders with a fast tokenizer (minilm, clip)")  # fmt: skip
    batch_text = {0: "batch", 1: "tokens"}
    found = [Component(
        "text_encoder", TextEncoderGraph(encoder), ("input_ids", "attention_mask"), ("pooled", "tokens"),
        {"input_ids": batch_text, "attention_mask": batch_text, "pooled": {0: "batch"}, "tokens": batch_text},
        _text_example(int(encoder.model.config.vocab_size), encoder.max_length),
        encoder_source(pipeline.config["encoder"].get("identity") or encoder.identity),
    )]  # fmt: skip
    if pipeline.config["stage"] == "align":
        aligner = sampler.aligner
        found.append(Component(
            "mapping", MappingGraph(aligner), ("text",), ("latent",), {"text": {0: "batch"}, "latent": {0: "batch"}},
            _normal_example(encoder.dim), checkpoint_source(run_dir, "aligner"),
        ))  # fmt: skip
    else:
        from t2vkit.plugins.samplers.diffusion import Denoiser

        model = getattr(sampler, "model", None)
        if not isinstance(model, Denoiser):
            raise ExportError(f"the {pipeline.config['denoiser']['name']} sampler's network is not a diffusion "
                              "Denoiser; the ONNX export knows only those (diffusion, prior)")  # fmt: skip
        found.append(Component(
            "unet", model.unet, ("x_t", "t", "tokens", "mask"), ("prediction",),
            {"x_t": {0: "batch"}, "t": {0: "batch"}, "tokens": batch_text, "mask": batch_text,
             "prediction": {0: "batch"}},
            _unet_example(model), checkpoint_source(run_dir, "denoiser"),
        ))  # fmt: skip
    found.append(Component(
        "decoder", DecoderGraph(decoder), ("latent",), ("video",), {"latent": {0: "batch"}, "video": {0: "batch"}},
        _normal_example(*decoder.latent_shape), checkpoint_source(run_dir, "decoder"),
    ))  # fmt: skip
    for component in found:
        component.module.eval()
    return found


# --------------------------------------------------------------------------- export and checks


def export_onnx(component: Component, path: Path, opset: int) -> None:
    """Trace ``component`` into ``path`` (single file; PyTorch moves weights out only past 2 GB)."""
    component.module.eval()  # (the exporter restores the mode it found: eval, so the checks below run in eval too)
    inputs = component.example(TRACE_BATCH, torch.Generator().manual_seed(0))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and deprecation chatter; the numbers are checked below
            torch.onnx.export(component.module, inputs, str(path), dynamo=False, opset_version=opset,
                              input_names=list(component.inputs), output_names=list(component.outputs),
                              dynamic_axes=component.dynamic_axes, do_constant_folding=True)  # fmt: skip
    except Exception as exc:
        raise ExportError(f"{component.name}: PyTorch cannot export it to ONNX: {type(exc).__name__}: {exc}") from None


def name_shapes(component: Component, path: Path) -> None:
    """Write every input and output's shape into the file: the dynamic axes by name, the others by size (the
    tracer leaves some output axes with generated names, such as the pooled width after a normalisation)."""
    inputs = component.example(TRACE_BATCH, torch.Generator().manual_seed(0))
    with torch.no_grad():
        outputs = component.module(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    sizes = dict(zip((*component.inputs, *component.outputs), (*inputs, *outputs), strict=True))
    model = onnx.load(str(path), load_external_data=False)
    for value in (*model.graph.input, *model.graph.output):
        dynamic = component.dynamic_axes.get(value.name, {})
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if axis in dynamic:
                dim.dim_param = dynamic[axis]
            else:
                dim.dim_value = int(sizes[value.name].shape[axis])
    onnx.save(model, str(path))


def check_against_torch(component: Component, path: Path, batches: tuple[int, ...]) -> dict[int, dict[str, float]]:
    """``onnx.checker``, then ONNX Runtime (CPU) vs PyTorch on random inputs: the max abs error per output
    and batch size (inf for a NaN, an inf or a wrong shape)."""
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{component.name}: onnx.checker rejects the exported model: {exc}") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(1)
    errors: dict[int, dict[str, float]] = {}
    for batch in batches:
        inputs = component.example(batch, generator)
        with torch.no_grad():
            expected = component.module(*inputs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        feeds = {name: x.numpy() for name, x in zip(component.inputs, inputs, strict=True)}
        got = session.run(list(component.outputs), feeds)
        errors[batch] = {name: _max_abs_error(out, ref.numpy())
                         for name, out, ref in zip(component.outputs, got, expected, strict=True)}  # fmt: skip
    return errors


def _max_abs_error(got: np.ndarray, expected: np.ndarray) -> float:
    if got.shape != expected.shape:
        return float("inf")
    error = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64)), initial=0.0))
    return error if np.isfinite(error) else float("inf")


def describe(path: Path, external: list[str]) -> dict[str, Any]:
    """Input/output names, dtypes and shapes (symbolic axes by name) as the ONNX file declares them, and
    the ``external`` files holding its weights (PyTorch writes them only past 2 GB)."""
    model = onnx.load(str(path), load_external_data=False)

    def values(items: Any) -> list[dict[str, Any]]:
        return [{
            "name": v.name,
            "dtype": np.dtype(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)).name,
            "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
        } for v in items]  # fmt: skip

    return {"inputs": values(model.graph.input), "outputs": values(model.graph.output),
            "external_data": [{"file": f, "sha256": sha256_file(path.parent / f)} for f in external]}  # fmt: skip


def format_errors(errors: dict[int, dict[str, float]]) -> str:
    return "; ".join(f"batch {b}: " + ", ".join(f"{n} {e:.1e}" for n, e in per.items()) for b, per in errors.items())


# --------------------------------------------------------------------------- the whole run


def check_settings(opset: int, batch_profile: tuple[int, int, int], tolerance: float) -> None:
    if opset < MIN_OPSET:
        raise ExportError(f"--opset must be at least {MIN_OPSET} (LayerNormalization as one op, which TensorRT "
                          f"needs for fp16), got {opset}")  # fmt: skip
    if opset > onnx.defs.onnx_opset_version():
        raise ExportError(f"--opset {opset} is newer than this onnx ({onnx.__version__}) knows "
                          f"({onnx.defs.onnx_opset_version()})")  # fmt: skip
    low, opt, high = batch_profile
    if not 1 <= low <= opt <= high:
        raise ExportError(f"--batch MIN,OPT,MAX needs 1 ≤ MIN ≤ OPT ≤ MAX, got {low},{opt},{high}")
    if not tolerance > 0:
        raise ExportError(f"--tolerance must be > 0, got {tolerance}")


def check_exportable(run_dir: Path) -> dict[str, Any]:
    """The run's config, if the run has a generation path to export (one clear error otherwise)."""
    from t2vkit.pipeline import DEFAULT_SAMPLER

    config = read_config(run_dir)
    stage = config.get("stage")
    if stage == "video":
        raise ExportError(f"nothing to export for generation: {run_dir} is a stage-1 (video) run, an autoencoder "
                          "with no text path; export the stage-2 (align) or diffusion run trained on it")  # fmt: skip
    if stage not in DEFAULT_SAMPLER:
        raise ExportError(f"nothing to export for generation: {run_dir} is a stage-{stage!r} run; export a "
                          "stage-2 (align) or diffusion run")  # fmt: skip
    return config


def export_run(run_dir: str | Path, opset: int = MIN_OPSET, batch_profile: tuple[int, int, int] = (1, 4, 16),
               tolerance: float = 1e-4, force: bool = False,
               echo: Callable[[str], None] = print) -> ExportResult:  # fmt: skip
    """Export ``run_dir``'s generation path to ``RUN_DIR/onnx`` (module docstring); ``echo`` gets one line
    per component with its errors against PyTorch. An up-to-date export with the same settings is kept
    unless ``force``; one whose files or run changed since is replaced."""
    run_dir = Path(run_dir)
    check_settings(opset, batch_profile, tolerance)
    config = check_exportable(run_dir)
    folder = export_dir(run_dir)
    if folder.exists() and not force and (kept := _existing(run_dir, opset, batch_profile, echo)) is not None:
        return kept

    from t2vkit.pipeline import Pipeline

    pipeline = Pipeline.from_run(run_dir)
    parts = components(pipeline, run_dir)
    encoder = pipeline.encoder
    stage = config["stage"]
    run = {"stage": stage, "sampler": pipeline.sampler_name, "latent_shape": list(pipeline.decoder.latent_shape),
           "clip_shape": config.get("dataset", {}).get("clip_shape"), "decoder": config["decoder"]["name"]}  # fmt: skip
    if stage == "align":
        run["aligner"] = config["aligner"]["name"]
    text = {"name": config["encoder"]["name"], "identity": parts[0].source["identity"], "dim": encoder.dim,
            "max_length": encoder.max_length, "pad_id": encoder.tokenizer.pad_token_id,
            "pad_token": encoder.tokenizer.pad_token, "padding_side": encoder.tokenizer.padding_side,
            "truncation_side": encoder.tokenizer.truncation_side}  # fmt: skip
    manifest = new_manifest(run, text, opset, batch_profile, tolerance, CHECK_BATCHES)
    errors: dict[str, dict[int, dict[str, float]]] = {}
    with staged_directory(folder) as stage_dir:
        failed = []
        for part in parts:
            path = stage_dir / part.file
            before = {p.name for p in stage_dir.iterdir()}
            export_onnx(part, path, opset)
            external = sorted(p.name for p in stage_dir.iterdir() if p.name not in before and p != path)
            name_shapes(part, path)
            errors[part.name] = check_against_torch(part, path, CHECK_BATCHES)
            worst = max(e for per in errors[part.name].values() for e in per.values())
            verdict = "ok" if worst <= tolerance else f"FAILED (tolerance {tolerance:.0e})"
            size = path.stat().st_size / 1e6
            echo(f"{part.name:<13} {part.file:<18} {size:8.1f} MB  max abs error vs PyTorch: "
                 f"{format_errors(errors[part.name])}  {verdict}")  # fmt: skip
            if worst > tolerance:
                failed.append(part.name)
            manifest["components"][part.name] = {
                "file": part.file, "sha256": sha256_file(path), "source": part.source, "opset": opset,
                "t2vkit_version": __version__, **describe(path, external),
                "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in part.dynamic_axes.items()},
                "max_abs_error": {str(b): per for b, per in errors[part.name].items()},
            }  # fmt: skip
        if failed:
            raise ExportError(f"{', '.join(failed)} differ(s) from PyTorch by more than {tolerance:.0e} in ONNX "
                              f"Runtime; nothing was written to {folder}")  # fmt: skip
        manifest["assets"]["tokenizer"] = _write_tokenizer(encoder.tokenizer, stage_dir, parts[0].source)
        if stage == "diffusion":
            model = pipeline.sampler.model
            manifest["assets"]["null_text"] = _write_null_text(model, stage_dir, parts[1].source)
            manifest["diffusion"] = {"denoiser": to_dict(model.config), "sampling": asdict(pipeline.sampler.config)}
        write_manifest(stage_dir, manifest)
    return ExportResult(folder, kept=False, errors=errors)


def _existing(run_dir: Path, opset: int, batch_profile: tuple[int, int, int],
              echo: Callable[[str], None]) -> ExportResult | None:  # fmt: skip
    """The result for an up-to-date export with these settings (kept); None when it must be replaced."""
    folder = export_dir(run_dir)
    try:
        manifest = load_manifest(run_dir)
    except T2VError as exc:
        echo(f"replacing the export in {folder}: {exc}")
        return None
    if manifest.data["opset"] != opset:
        raise ExportError(f"{folder} holds an export with opset {manifest.data['opset']}; pass --force to replace "
                          f"it with an opset-{opset} one")  # fmt: skip
    low, opt, high = batch_profile
    if manifest.data["batch_profile"] != {"min": low, "opt": opt, "max": high}:
        # The ONNX files have a dynamic batch axis: a new profile (what TensorRT engines are built for) is a note.
        manifest.data["batch_profile"] = {"min": low, "opt": opt, "max": high}
        write_manifest(folder, manifest.data)
    echo(f"{folder} is up to date with {run_dir} (opset {opset}); kept (pass --force to export again)")
    errors = {name: {int(b): per for b, per in entry["max_abs_error"].items()}
              for name, entry in manifest.components.items()}  # fmt: skip
    return ExportResult(folder, kept=True, errors=errors)


def _write_tokenizer(tokenizer: Any, folder: Path, source: dict[str, str]) -> dict[str, Any]:
    """The fast tokenizer's backend as ``tokenizer.json``, without the padding/truncation state the last
    ``tokenizer(...)`` call left on it (the runtime sets both from the manifest)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    path = folder / "tokenizer.json"
    with atomic_path(path) as tmp:
        tmp.write_text(backend.to_str(), encoding="utf-8")
    return {"file": path.name, "sha256": sha256_file(path), "source": source}


def _write_null_text(model: Any, folder: Path, source: dict[str, str]) -> dict[str, Any]:
    """The empty caption's token states ``[1, L0, d]`` and mask ``[1, L0]`` (classifier-free guidance)."""
    tokens, mask = model.null_text()
    buffer = io.BytesIO()
    np.savez(buffer, tokens=tokens.float().cpu().numpy(), mask=mask.bool().cpu().numpy())
    path = folder / "null_text.npz"
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return {"file": path.name, "sha256": sha256_file(path), "source": source}


__all__ = ["CHECK_BATCHES", "MIN_OPSET", "Component", "ExportError", "ExportResult", "components", "export_command",
           "export_run"]  # fmt: skip
