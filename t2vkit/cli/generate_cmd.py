"""``t2vkit generate``: videos from prompts with a trained run."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from t2vkit.errors import T2VError

BACKENDS = ("torch", "onnx", "trt")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)


def slug(text: str, limit: int = 60) -> str:
    """A file-name-safe version of a prompt: "Digit 3 is moving!" → "digit-3-is-moving"."""
    words = re.findall(r"\w+", text.lower())
    return "-".join(words)[:limit].strip("-") or "video"


def output_paths(out: Path | None, prompts: list[str], num: int) -> list[Path]:
    """One .mp4 path per video: ``out`` for a single video; else ``out``'s stem numbered by sample
    (one prompt), by prompt (one sample each), or by both; without ``out``, the prompts as names."""
    if out is not None and out.suffix.lower() != ".mp4":
        raise T2VError(f"--out must end in .mp4, got {out}")
    if len(prompts) * num == 1:
        return [out or Path(f"{slug(prompts[0])}.mp4")]
    stems = [slug(prompt) for prompt in prompts] if out is None else [out.stem] * len(prompts)
    if len(prompts) > 1 and (out is not None or len(set(stems)) < len(stems)):
        stems = [f"{stem}-{p:02d}" for p, stem in enumerate(stems, 1)]  # one prompt's files never clash
    parent = out.parent if out is not None else Path()
    return [parent / (f"{stem}-{k:02d}.mp4" if num > 1 else f"{stem}.mp4") for stem in stems for k in range(1, num + 1)]


def generate(
    prompt: str | None = typer.Argument(None, help="What the video shows, e.g. \"digit 3 is moving up and down\"."),
    model: Path | None = typer.Option(None, "--model", help="A trained stage-2 (align) or diffusion run directory "
                                      "(default: the model shipped with t2vkit; --backend torch only)."),
    prompts: Path | None = typer.Option(None, "--prompts", help="A text file with one prompt per line."),
    num: int = typer.Option(1, "--num", help="Videos per prompt."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed; the same seed gives the same videos."),
    out: Path | None = typer.Option(None, "--out", help="Output .mp4 (default: the prompt as a file name)."),
    gif: bool = typer.Option(False, "--gif", help="Also write a GIF beside each mp4."),
    sheet: bool = typer.Option(False, "--sheet", help="Also write a PNG contact sheet of all videos."),
    backend: str = typer.Option("torch", "--backend", help="torch, onnx or trt (onnx and trt after `t2vkit export`)."),
    sampler: str | None = typer.Option(None, "--sampler", help="direct (align runs), diffusion (diffusion runs)."),
    steps: int | None = typer.Option(None, "--steps", help="Diffusion: DDIM steps (default 25)."),
    cfg: float | None = typer.Option(None, "--cfg", help="Diffusion: classifier-free guidance scale (default 7.5)."),
    mg_alpha: float | None = typer.Option(None, "--mg-alpha", help="Diffusion: MG sampling scale (default 40; 0 off)."),
    scale: int = typer.Option(1, "--scale", help="Enlarge frames by this factor (nearest neighbour) to view them."),
    fps: int = typer.Option(8, "--fps", help="Frames per second of the written videos."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (torch and onnx; trt always runs on the GPU)."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="trt: replay the UNet step as a CUDA graph."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Generate videos from text with a trained model (without --model, the one shipped with t2vkit); prints the
    paths it wrote.

    [dim]Examples:[/]
      t2vkit generate "digit 3 is moving up and down"
      t2vkit generate "digit 3 is moving up and down" --model runs/progressive
      t2vkit generate "person 2 is walking left to right" --model runs/kth --out walk.mp4 --gif --scale 4
      t2vkit generate --prompts prompts.txt --model runs/progressive --out videos/clip.mp4 --sheet
      t2vkit generate "digit 7 is moving left and right" --model runs/diffusion --num 4 --steps 25 --cfg 7.5 --seed 1
      t2vkit generate "digit 3 is moving up and down" --model runs/progressive --backend onnx
      t2vkit generate "digit 7 is moving left and right" --model runs/diffusion --backend trt --cuda-graph --num 8
    """
    from t2vkit.cli import console

    if backend not in BACKENDS:
        raise T2VError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if cuda_graph and backend != "trt":
        raise T2VError("--cuda-graph is an option of --backend trt")
    if (prompt is None) == (prompts is None):
        raise T2VError("give either a PROMPT or --prompts FILE (one of them)")
    if model is None and backend != "torch":
        export = "t2vkit export RUN_DIR" + (" --trt" if backend == "trt" else "")
        raise T2VError(f"--backend {backend} needs --model: the default model ships PyTorch weights only (its ONNX "
                       "export would be ~100 MB, 90 MB of it the MiniLM text encoder, over the package's 25 MB "
                       f"budget); run `{export}` on a trained run and pass --model RUN_DIR, or use --backend torch")
    if model is None:
        from t2vkit import default_model

        model = default_model.require()
    if scale < 1 or fps < 1:
        raise T2VError("--scale and --fps must be at least 1")
    texts = [prompt] if prompt is not None else _read_prompts(prompts)

    from t2vkit.prompts import check_prompts

    texts = check_prompts(texts)
    paths = output_paths(out, texts, num)
    planned = paths + [p.with_suffix(".gif") for p in paths if gif] + ([_sheet_path(paths[0], out)] if sheet else [])
    existing = [p for p in planned if p.exists()]
    if existing and not overwrite:
        raise T2VError(f"{existing[0]} already exists; pass --overwrite to replace it")

    from t2vkit.video_io import contact_sheet, upscale, write_gif, write_mp4, write_png

    given = {"steps": steps, "cfg": cfg, "mg_alpha": mg_alpha}
    options = {k: v for k, v in given.items() if v is not None}
    if backend == "onnx":  # imports no torch with the direct sampler
        from t2vkit.exporters.onnx_runtime import OnnxPipeline

        providers = ["CPUExecutionProvider"] if device == "cpu" else None  # cuda: TensorRT / CUDA where they work
        pipeline = OnnxPipeline.from_run(model, providers=providers, sampler=sampler, options=options)
        if device != "cpu" and pipeline.providers == ["CPUExecutionProvider"]:
            raise T2VError(f"--device {device}: ONNX Runtime has no working GPU provider here; use --device cpu")
    elif backend == "trt":
        from t2vkit.exporters.trt_runtime import TrtPipeline

        pipeline = TrtPipeline.from_run(model, cuda_graph=cuda_graph, sampler=sampler, options=options)
    else:
        from t2vkit.pipeline import Pipeline

        pipeline = Pipeline.from_run(model, sampler=sampler, device=device, options=options)
    videos = pipeline.videos(texts, n=num, seed=seed)
    for path, video in zip(paths, videos, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        big = upscale(video, scale)
        console.print(str(write_mp4(path, big, fps=fps)))
        if gif:
            console.print(str(write_gif(path.with_suffix(".gif"), big, fps=fps)))
    if sheet:
        console.print(str(write_png(_sheet_path(paths[0], out), contact_sheet([upscale(v, scale) for v in videos]))))


def _read_prompts(path: Path) -> list[str]:
    if not path.is_file():
        raise T2VError(f"prompts file not found: {path}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    texts = [line for line in lines if line and not line.startswith("#")]
    if not texts:
        raise T2VError(f"{path} holds no prompt (one per line; # starts a comment)")
    return texts


def _sheet_path(first: Path, out: Path | None) -> Path:
    base = out if out is not None else first
    return base.with_name(f"{base.stem}-sheet.png")
