"""``t2vkit export``: a trained run's generation path as ONNX files (``RUN_DIR/onnx``), checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import typer

from t2vkit.errors import T2VError


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def parse_batch_profile(text: str) -> tuple[int, int, int]:
    """``"1,4,16"`` → (1, 4, 16): the MIN,OPT,MAX batch sizes TensorRT profiles are built for."""
    try:
        low, opt, high = (int(part) for part in text.split(","))
    except ValueError:
        raise T2VError(f"--batch takes MIN,OPT,MAX, three whole numbers such as 1,4,16; got {text!r}") from None
    return low, opt, high


def export(
    run_dir: Path = typer.Argument(..., help="A trained stage-2 (align) or diffusion run directory."),
    trt: bool = typer.Option(False, "--trt", help="Also build TensorRT engines in RUN_DIR/trt (needs a GPU)."),
    fp16: bool = typer.Option(False, "--fp16", help="With --trt: fp16 engines (LayerNorm kept in fp32)."),
    batch: str = typer.Option("1,4,16", "--batch", help="MIN,OPT,MAX batch sizes of the TensorRT profiles."),
    no_build: bool = typer.Option(False, "--no-build", help="With --trt: build nothing; fail if an engine is stale."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (at least 17: LayerNormalization as one op)."),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="Largest max abs error against PyTorch (fp32)."),
    force: bool = typer.Option(False, "--force", help="Export (and build) again even if up to date."),
) -> None:
    """Export a run to ONNX: one file per component in RUN_DIR/onnx, with a manifest.json; with --trt, TensorRT
    engines from those files in RUN_DIR/trt.

    Each ONNX component (text encoder, mapping or UNet step, decoder) is checked with onnx.checker and run
    in ONNX Runtime against PyTorch on random inputs at batch sizes 1 and 3; the max abs error per output
    is printed and nothing is written if one is over --tolerance. Afterwards `t2vkit generate --backend
    onnx` runs the export (with the direct sampler, without PyTorch).

    --trt builds engines for the mapping, the UNet step and the decoder (the text encoder stays in ONNX
    Runtime), named by GPU and compute capability, TensorRT version and ONNX hash, and validates each
    against ONNX Runtime. Engines already built for this GPU, TensorRT and export are kept; stale or
    foreign ones are rebuilt (the reason is printed), or refused under --no-build.

    [dim]Examples:[/]
      t2vkit export runs/progressive
      t2vkit export runs/diffusion --opset 18 --force
      t2vkit export runs/progressive --trt --fp16 --batch 1,8,32
      t2vkit export runs/progressive --trt --no-build
      t2vkit generate "digit 3 is moving up and down" --model runs/progressive --backend onnx
    """
    from t2vkit.cli import console

    profile = parse_batch_profile(batch)
    if (fp16 or no_build) and not trt:
        raise T2VError(f"{'--fp16' if fp16 else '--no-build'} is an option of --trt engines; add --trt")
    if trt:  # fail before exporting when TensorRT cannot run here
        from t2vkit.exporters.trt_runtime import require_tensorrt

        require_tensorrt("t2vkit export --trt", "")
    from t2vkit.exporters.onnx_export import export_run

    def echo(line: str) -> None:
        console.print(line, highlight=False, soft_wrap=True, markup=False)

    result = export_run(run_dir, opset=opset, batch_profile=profile, tolerance=tolerance, force=force and not no_build,
                        echo=echo)  # fmt: skip
    if not result.kept:
        console.print(f"wrote {result.folder}", markup=False)
    if trt:
        from t2vkit.exporters.trt_build import build_engines
        from t2vkit.exporters.trt_engine import trt_dir

        plans = build_engines(run_dir, fp16=fp16, batch=profile, no_build=no_build, force=force, echo=echo)
        if any(plan.action == "build" for plan in plans) and not no_build:
            console.print(f"wrote {trt_dir(run_dir)}", markup=False)
