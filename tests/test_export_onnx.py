"""ONNX export and the ONNX Runtime backend as a user runs them: tiny trained runs (a stage-2 progressive run with
the real MiniLM encoder, a pixel-space diffusion run), `t2vkit export`, then generation in ONNX Runtime, compared
with PyTorch; the direct sampler's ONNX path also in a process where torch cannot be imported."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from t2vkit.checkpoint import load_tensors, save_tensors
from t2vkit.errors import CheckpointError, T2VError
from t2vkit.exporters.manifest import FORMAT, FORMAT_VERSION, load_manifest
from t2vkit.exporters.onnx_export import ExportError, check_against_torch, components, export_run
from t2vkit.exporters.onnx_runtime import OnnxPipeline
from t2vkit.fsutil import sha256_file
from t2vkit.pipeline import Pipeline
from t2vkit.video_io import read_video

T2VKIT = str(Path(sys.executable).parent / "t2vkit")
PROMPTS = ["digit 3 is moving up and down", "digit 7 is moving left and right", "Ziffer 3 bewegt sich — 数字が動く"]
SAMPLING = {"steps": 3, "cfg": 2.0, "mg_alpha": 40.0}


def quiet(line: str) -> None:
    """export_run's per-component lines, kept out of the test output."""


# The tiny exported runs (fixtures stage1, aligned, diffusion) are built once per session in conftest.py.


@pytest.fixture
def copy_of(tmp_path):
    """A copy of an exported run that a test may break."""

    def copy(run: Path) -> Path:
        return Path(shutil.copytree(run, tmp_path / run.name))

    return copy


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([T2VKIT, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0], lines[0]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# --------------------------------------------------------------------------- what export writes


def check_manifest_schema(run: Path, names: set[str]) -> dict:
    folder = run / "onnx"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == FORMAT and manifest["format_version"] == FORMAT_VERSION
    assert manifest["opset"] == 17 and manifest["batch_profile"] == {"min": 1, "opt": 4, "max": 16}
    assert set(manifest["components"]) == names
    text = manifest["text_encoder"]
    config = json.loads((run / "config.json").read_text())
    assert text["name"] == "minilm" and text["identity"] == config["encoder"]["identity"]
    assert (text["max_length"], text["pad_id"], text["pad_token"], text["dim"]) == (256, 0, "[PAD]", 384)
    assert manifest["run"]["clip_shape"] == config["dataset"]["clip_shape"]
    for name, entry in manifest["components"].items():
        path = folder / entry["file"]
        assert entry["file"] == f"{name}.onnx" and entry["sha256"] == sha256_file(path)
        assert entry["opset"] == 17 and entry["t2vkit_version"] and entry["external_data"] == []
        model = onnx.load(str(path))  # one file: no external data to find
        onnx.checker.check_model(model)
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
        assert [v.name for v in model.graph.input] == [i["name"] for i in entry["inputs"]]
        for value in [*entry["inputs"], *entry["outputs"]]:
            assert value["shape"][0] == "batch" and entry["dynamic_axes"][value["name"]]["0"] == "batch"
            assert all(isinstance(d, int) for d in value["shape"][1:] if d != "tokens")  # no generated axis names
        assert set(entry["max_abs_error"]) == {"1", "3"}
        assert max(max(per.values()) for per in entry["max_abs_error"].values()) <= 1e-4
        source = entry["source"]
        if "identity" in source:
            assert source["identity"] == text["identity"]
        else:
            assert source["sha256"] == sha256_file(run / source["file"])
    tokenizer = manifest["assets"]["tokenizer"]
    assert tokenizer["sha256"] == sha256_file(folder / "tokenizer.json")
    return manifest


def test_export_of_an_align_run_writes_three_components_and_a_manifest(aligned):
    assert sorted(p.name for p in (aligned / "onnx").iterdir()) == [
        "decoder.onnx", "manifest.json", "mapping.onnx", "text_encoder.onnx", "tokenizer.json"]  # fmt: skip
    assert not [p for p in aligned.iterdir() if p.name.startswith(".onnx")]  # no staging folder left
    manifest = check_manifest_schema(aligned, {"text_encoder", "mapping", "decoder"})
    assert manifest["run"] == {"stage": "align", "sampler": "direct", "latent_shape": [64],
                               "clip_shape": [16, 64, 64, 1], "decoder": "wae3d", "aligner": "progressive"}  # fmt: skip
    encoder, mapping, decoder = (manifest["components"][n] for n in ("text_encoder", "mapping", "decoder"))
    signature = [(v["name"], v["dtype"], v["shape"]) for v in [*encoder["inputs"], *encoder["outputs"]]]
    assert signature == [
        ("input_ids", "int64", ["batch", "tokens"]),
        ("attention_mask", "int64", ["batch", "tokens"]),
        ("pooled", "float32", ["batch", 384]),
        ("tokens", "float32", ["batch", "tokens", 384]),
    ]
    assert mapping["source"]["file"] == "aligner.safetensors" and mapping["outputs"][0]["shape"] == ["batch", 64]
    assert decoder["source"]["file"] == "decoder.safetensors"
    assert decoder["outputs"][0]["shape"] == ["batch", 1, 16, 64, 64]


def test_export_of_a_diffusion_run_writes_the_unet_step_empty_caption_and_schedule(diffusion):
    manifest = check_manifest_schema(diffusion, {"text_encoder", "unet", "decoder"})
    assert manifest["run"]["sampler"] == "diffusion" and manifest["run"]["latent_shape"] == [1, 8, 32, 32]
    unet = manifest["components"]["unet"]
    assert [(i["name"], i["dtype"], i["shape"]) for i in unet["inputs"]] == [
        ("x_t", "float32", ["batch", 1, 8, 32, 32]), ("t", "int64", ["batch"]),
        ("tokens", "float32", ["batch", "tokens", 384]), ("mask", "bool", ["batch", "tokens"])]  # fmt: skip
    assert unet["source"] == {"file": "denoiser.safetensors", "sha256": sha256_file(diffusion / "denoiser.safetensors")}
    denoiser = json.loads((diffusion / "config.json").read_text())["denoiser"]
    assert manifest["diffusion"]["denoiser"] == {k: v for k, v in denoiser.items() if k != "name"}
    assert manifest["diffusion"]["sampling"] == {"steps": 25, "cfg": 7.5, "mg_alpha": 40.0, "eta": 0.0}
    null = manifest["assets"]["null_text"]
    assert null["sha256"] == sha256_file(diffusion / "onnx" / "null_text.npz")
    with np.load(diffusion / "onnx" / "null_text.npz") as saved:
        tokens, mask = Pipeline.from_run(diffusion).sampler.model.null_text()
        assert np.array_equal(saved["tokens"], tokens.numpy()) and np.array_equal(saved["mask"], mask.numpy())


@pytest.mark.parametrize("which", ["aligned", "diffusion"])
def test_every_component_matches_torch_in_onnx_runtime_at_two_more_batch_sizes(which, request):
    run = request.getfixturevalue(which)
    pipeline = Pipeline.from_run(run)
    for component in components(pipeline, run):
        errors = check_against_torch(component, run / "onnx" / component.file, (2, 5))
        assert set(errors) == {2, 5}
        assert all(0 <= e <= 1e-4 for per in errors.values() for e in per.values()), (component.name, errors)


# --------------------------------------------------------------------------- parity of generation


def test_direct_sampler_onnx_videos_are_within_one_level_of_torch(aligned, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("t2vkit"), "propagate", True)  # the CLI's logging set-up stops it
    caplog.set_level(logging.WARNING, logger="t2vkit")
    prompts = [*PROMPTS, "digit 4 is moving " * 100]  # the last one is truncated to 256 tokens
    torch_videos = Pipeline.from_run(aligned).videos(prompts, n=2, seed=3)
    onnx_pipeline = OnnxPipeline.from_run(aligned, threads=1)
    onnx_videos = onnx_pipeline.videos(prompts, n=2, seed=3)
    assert onnx_pipeline.providers == ["CPUExecutionProvider"]
    assert onnx_videos.shape == torch_videos.shape == (8, 16, 64, 64, 1) and onnx_videos.dtype == np.uint8
    assert int(np.abs(onnx_videos.astype(int) - torch_videos.astype(int)).max()) <= 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "t2vkit"]
    limit = "1 of 4 text(s) exceed the minilm encoder's limit of 256 tokens and were truncated"
    assert warnings == [limit, limit]  # once from torch, once from the ONNX tokenizer


def test_the_exported_tokenizer_gives_the_torch_encoders_ids(aligned):
    encoder = Pipeline.from_run(aligned).encoder
    pipeline = OnnxPipeline.from_run(aligned, threads=1)
    texts = [*PROMPTS, "x " * 400, "a"]
    ids, mask = pipeline.tokenizer(texts)
    reference = encoder.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
    assert np.array_equal(ids, reference["input_ids"]) and np.array_equal(mask, reference["attention_mask"])


def test_diffusion_onnx_videos_match_torch_with_the_same_seed(diffusion):
    torch_videos = Pipeline.from_run(diffusion, options=SAMPLING).videos(PROMPTS[:2], n=2, seed=5)
    onnx_videos = OnnxPipeline.from_run(diffusion, options=SAMPLING, threads=1).videos(PROMPTS[:2], n=2, seed=5)
    assert onnx_videos.shape == torch_videos.shape == (4, 8, 32, 32, 1)
    assert psnr(onnx_videos, torch_videos) >= 40.0
    assert not np.array_equal(onnx_videos[0], onnx_videos[1])  # two samples of one prompt differ


def test_generate_backend_onnx_writes_an_mp4(aligned, diffusion, tmp_path):
    result = cli("generate", PROMPTS[0], "--model", str(aligned), "--backend", "onnx", "--seed", "2",
                 "--out", str(tmp_path / "onnx.mp4"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "onnx.mp4")
    assert cli("generate", PROMPTS[0], "--model", str(aligned), "--seed", "2",
               "--out", str(tmp_path / "torch.mp4")).returncode == 0  # fmt: skip
    video = read_video(tmp_path / "onnx.mp4")
    assert video.shape == (16, 64, 64, 3)
    assert int(np.abs(video.astype(int) - read_video(tmp_path / "torch.mp4").astype(int)).max()) <= 2
    drawn = cli("generate", PROMPTS[1], "--model", str(diffusion), "--backend", "onnx", "--steps", "2", "--num", "2",
                "--seed", "1", "--out", str(tmp_path / "d.mp4"))  # fmt: skip
    assert drawn.returncode == 0, drawn.stderr
    assert read_video(tmp_path / "d-02.mp4").shape == (8, 32, 32, 3)
    wrong = cli("generate", PROMPTS[0], "--model", str(diffusion), "--backend", "onnx", "--sampler", "direct")
    one_line_error(wrong, "draws with the diffusion sampler; use --sampler diffusion")


NO_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"{name} is blocked: this process must run without torch")

sys.meta_path.insert(0, NoTorch())
from t2vkit.cli import main

try:
    main(sys.argv[1:])
except SystemExit as stop:  # click exits, 0 on success
    if stop.code:
        raise
assert "torch" not in sys.modules
print("torch-free", sorted(m for m in ("transformers", "diffusers", "t2vkit.pipeline") if m in sys.modules))
"""


def test_the_direct_sampler_runs_without_torch(aligned, tmp_path):
    blocked = subprocess.run([sys.executable, "-c", NO_TORCH.replace("from t2vkit.cli import main", "import torch")],
                             capture_output=True, text=True)  # fmt: skip
    assert blocked.returncode == 1 and "torch is blocked" in blocked.stderr  # the blocker works
    result = subprocess.run([sys.executable, "-c", NO_TORCH, "generate", PROMPTS[0], "--model", str(aligned),
                             "--backend", "onnx", "--num", "2", "--out", str(tmp_path / "v.mp4")],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "torch-free []"
    assert read_video(tmp_path / "v-02.mp4").shape == (16, 64, 64, 3)


# --------------------------------------------------------------------------- bad input


def test_generate_without_an_export_names_the_command_to_run(stage1, aligned, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(aligned, bare, ignore=shutil.ignore_patterns("onnx"))
    result = cli("generate", PROMPTS[0], "--model", str(bare), "--backend", "onnx", "--out", str(tmp_path / "x.mp4"))
    one_line_error(result, f"run `t2vkit export {bare}` first")
    assert not (tmp_path / "x.mp4").exists()


def test_a_missing_a_corrupt_and_a_swapped_onnx_file_are_each_one_clear_error(aligned, copy_of):
    run = copy_of(aligned)
    folder = run / "onnx"
    manifest = json.loads((folder / "manifest.json").read_text())

    (folder / "decoder.onnx").rename(folder / "decoder.moved")
    with pytest.raises(CheckpointError, match=r"the decoder file .*decoder.onnx is missing; re-run `t2vkit export"):
        OnnxPipeline.from_run(run)
    (folder / "decoder.moved").rename(folder / "decoder.onnx")

    original = (folder / "mapping.onnx").read_bytes()
    (folder / "mapping.onnx").write_bytes(b"\x00garbage, not a protobuf\xff" * 10)
    with pytest.raises(CheckpointError, match=r"mapping file .* does not match the sha256 in its manifest"):
        OnnxPipeline.from_run(run)
    result = cli("generate", PROMPTS[0], "--model", str(run), "--backend", "onnx")
    one_line_error(result, "does not match the sha256 in its manifest (changed or corrupted after export); re-run")

    # garbage that the manifest vouches for: ONNX Runtime's refusal becomes one clear error too
    edited = json.loads(json.dumps(manifest))
    edited["components"]["mapping"]["sha256"] = sha256_file(folder / "mapping.onnx")
    (folder / "manifest.json").write_text(json.dumps(edited))
    with pytest.raises(CheckpointError, match=r"mapping.onnx is not a model ONNX Runtime can load .*--force"):
        OnnxPipeline.from_run(run)

    # a valid ONNX file, but not the one exported (another component's)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    shutil.copyfile(folder / "decoder.onnx", folder / "mapping.onnx")
    with pytest.raises(CheckpointError, match=r"mapping file .* does not match the sha256"):
        OnnxPipeline.from_run(run)
    (folder / "mapping.onnx").write_bytes(original)
    assert OnnxPipeline.from_run(run, threads=1).videos([PROMPTS[0]]).shape == (1, 16, 64, 64, 1)


def test_a_run_retrained_after_export_is_refused_until_exported_again(aligned, copy_of):
    run = copy_of(aligned)
    state = load_tensors(run / "aligner.safetensors")
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = state[first] + 0.5
    save_tensors(run / "aligner.safetensors", state)
    with pytest.raises(
        CheckpointError,
        match=r"the mapping was exported from another aligner.safetensors than .* "
        r"\(the run was retrained after export\); re-run `t2vkit export",
    ):
        OnnxPipeline.from_run(run)
    lines: list[str] = []
    export_run(run, echo=lines.append)  # a stale export is replaced without --force
    assert lines[0].startswith(f"replacing the export in {run / 'onnx'}")
    assert load_manifest(run).components["mapping"]["source"]["sha256"] == sha256_file(run / "aligner.safetensors")
    torch_videos = Pipeline.from_run(run).videos([PROMPTS[0]])
    assert int(np.abs(OnnxPipeline.from_run(run, threads=1).videos([PROMPTS[0]]).astype(int)
                      - torch_videos.astype(int)).max()) <= 1  # fmt: skip


def test_an_up_to_date_export_is_kept_and_a_failed_one_writes_nothing(aligned, copy_of):
    run = copy_of(aligned)
    before = {p.name: p.read_bytes() for p in (run / "onnx").iterdir()}
    lines: list[str] = []
    assert export_run(run, echo=lines.append).kept and "is up to date" in lines[0]
    with pytest.raises(ExportError, match=r"holds an export with opset 17; pass --force to replace it"):
        export_run(run, opset=18, echo=quiet)
    assert export_run(run, batch_profile=(1, 8, 32), echo=quiet).kept  # the batch axis is dynamic: only noted
    assert load_manifest(run).data["batch_profile"] == {"min": 1, "opt": 8, "max": 32}
    export_run(run, echo=quiet)
    lines.clear()
    with pytest.raises(ExportError, match=r"differ\(s\) from PyTorch by more than 1e-12 .* nothing was written"):
        export_run(run, tolerance=1e-12, force=True, echo=lines.append)
    assert len(lines) == 3 and all("FAILED (tolerance 1e-12)" in line for line in lines)
    assert {p.name: p.read_bytes() for p in (run / "onnx").iterdir()} == before  # the old export is untouched
    assert not [p for p in run.iterdir() if p.name.startswith(".onnx")]  # and no staging folder is left


def test_bad_export_requests_are_one_clear_error_and_write_nothing(stage1, aligned, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(aligned, run, ignore=shutil.ignore_patterns("onnx"))
    one_line_error(cli("export", str(run), "--opset", "16"), "--opset must be at least 17")
    one_line_error(cli("export", str(run), "--batch", "4,2,8"), "needs 1 ≤ MIN ≤ OPT ≤ MAX, got 4,2,8")
    one_line_error(cli("export", str(run), "--batch", "1,4"), "--batch takes MIN,OPT,MAX")
    one_line_error(cli("export", str(stage1)), f"nothing to export for generation: {stage1} is a stage-1 (video) run")
    one_line_error(cli("export", str(tmp_path / "nope")), "run directory not found")
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in aligned.iterdir() if p.name != "onnx")
    assert not (stage1 / "onnx").exists()
    with pytest.raises(T2VError, match="no prompt given"):
        OnnxPipeline.from_run(aligned, threads=1).videos([])
    with pytest.raises(T2VError, match="prompt 2 is empty"):
        OnnxPipeline.from_run(aligned, threads=1).videos(["digit 1", "  "])
