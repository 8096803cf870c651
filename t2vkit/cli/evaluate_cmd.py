"""``t2vkit evaluate``: the paper's metrics for a run."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


def evaluate(
    run: Path = typer.Argument(..., help="A run directory (stage 1, or a text-to-video run)."),
    dataset: Path = typer.Option(..., "--dataset", help="The prepared data set to evaluate on."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    num_per_prompt: int = typer.Option(1, "--num-per-prompt", help="Videos generated per caption."),
    seed: int = typer.Option(0, "--seed", help="Seed for generation."),
    latent_run: Path | None = typer.Option(None, "--latent-run", help="Stage-1 run embedding videos for diversity."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the report as JSON."),
    markdown_path: Path | None = typer.Option(None, "--markdown", help="Also write a Markdown table."),
) -> None:
    """Reconstruction PSNR/SSIM of a stage-1 run; bucket PSNR/SSIM of a text-to-video run, and with
    --num-per-prompt K ≥ 2 the diversity of its K videos per prompt against K real ones (ratio 1 =
    as varied as the data), measured in a stage-1 encoder's latent space.

    [dim]Examples:[/]
      t2vkit evaluate runs/wae3d --dataset data/syncdraw
      t2vkit evaluate runs/progressive --dataset data/syncdraw --json progressive.json --markdown table.md
      t2vkit evaluate runs/diffusion --dataset data/syncdraw --num-per-prompt 8 --latent-run runs/wae3d
    """
    from rich.table import Table

    from t2vkit.cli import console
    from t2vkit.errors import T2VError
    from t2vkit.evaluate import evaluate as run_evaluation
    from t2vkit.evaluate import markdown
    from t2vkit.fsutil import atomic_write_json, atomic_write_text

    if num_per_prompt < 1:
        raise T2VError("--num-per-prompt must be at least 1")
    report = run_evaluation(run, dataset, split=split, num_per_prompt=num_per_prompt, seed=seed, device=device,
                            latent_run=latent_run)  # fmt: skip
    table = Table(title=f"{run} on {report.dataset} ({report.split}, {report.clips} clips)")
    table.add_column("metric")
    table.add_column("mean ± std", justify="right")
    for name, value in report.metrics.items():
        table.add_row(name, f"{value['mean']:.4f} ± {value['std']:.4f}")
    for name, why in report.skipped.items():
        table.add_row(name, f"[dim]skipped: {why}[/]")
    for reference, values in report.references.items():
        for name, value in values.items():
            table.add_row(f"[dim]{name} of the {reference.replace('_', ' ')} clip[/]", f"[dim]{value:.4f}[/]")
    console.print(table)
    if json_path:
        atomic_write_json(json_path, report.as_dict())
    if markdown_path:
        atomic_write_text(markdown_path, markdown([report]))
    if json_path or markdown_path:
        console.print(" ".join(str(p) for p in (json_path, markdown_path) if p))
