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
    opset: int = typer.Option(17, "--opset", help="ONNX opset (at least 17: LayerNormalization as one op)."),
    batch: str = typer.Option("1,4,16", "--batch", help="MIN,OPT,MAX batch sizes, recorded for TensorRT profiles."),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="Largest max abs error against PyTorch (fp32)."),
    force: bool = typer.Option(False, "--force", help="Export again even if an up-to-date export exists."),
) -> None:
    """Export a run to ONNX: one file per component in RUN_DIR/onnx, with a manifest.json.

    Each component (text encoder, mapping or UNet step, decoder) is checked with onnx.checker and run in
    ONNX Runtime against PyTorch on random inputs at batch sizes 1 and 3; the max abs error per output is
    printed and nothing is written if one is over --tolerance. Afterwards `t2vkit generate --backend onnx`
    runs the export (with the direct sampler, without PyTorch).

    [dim]Examples:[/]
      t2vkit export runs/progressive
      t2vkit export runs/diffusion --opset 18 --batch 1,8,32 --force
      t2vkit generate "digit 3 is moving up and down" --model runs/progressive --backend onnx
    """
    from t2vkit.cli import console
    from t2vkit.exporters.onnx_export import export_run

    profile = parse_batch_profile(batch)
    result = export_run(run_dir, opset=opset, batch_profile=profile, tolerance=tolerance, force=force,
                        echo=lambda line: console.print(line, highlight=False, soft_wrap=True))  # fmt: skip
    if not result.kept:
        console.print(f"wrote {result.folder}")
