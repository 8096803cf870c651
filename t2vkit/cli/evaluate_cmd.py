"""``t2vkit evaluate``: the paper's metrics for a run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from t2vkit.report import Report


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


def evaluate(
    runs: list[Path] = typer.Argument(..., help="Run directories (stage 1 or text-to-video), one table row each."),
    dataset: Path = typer.Option(..., "--dataset", help="The prepared data set to evaluate on."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    num_per_prompt: int = typer.Option(1, "--num-per-prompt", help="Videos generated per caption."),
    seed: int = typer.Option(0, "--seed", help="Seed for generation."),
    steps: int | None = typer.Option(None, "--steps", help="Diffusion runs: DDIM steps (default: the sampler's)."),
    cfg: float | None = typer.Option(None, "--cfg", help="Diffusion runs: classifier-free guidance scale."),
    mg_alpha: float | None = typer.Option(None, "--mg-alpha", help="Diffusion runs: MG sampling scale (0 off)."),
    latent_run: Path | None = typer.Option(None, "--latent-run", help="Stage-1 run embedding videos for diversity."),
    fvd_videos: int = typer.Option(512, "--fvd-videos", help="Videos per set for FVD/KVD (more than 400)."),
    i3d: Path | None = typer.Option(None, "--i3d", help="I3D Kinetics-400 weights (.safetensors); env T2VKIT_I3D."),
    lpips_backbone: Path | None = typer.Option(None, "--lpips-backbone",
                                               help="AlexNet ImageNet weights; env T2VKIT_LPIPS_BACKBONE."),
    lpips_heads: Path | None = typer.Option(None, "--lpips-heads",
                                            help="LPIPS v0.1 heads, alex.pth; env T2VKIT_LPIPS_HEADS."),
    dists_backbone: Path | None = typer.Option(None, "--dists-backbone",
                                               help="VGG16 ImageNet weights; env T2VKIT_DISTS_BACKBONE."),
    dists_weights: Path | None = typer.Option(None, "--dists-weights",
                                              help="DISTS alpha/beta, weights.pt; env T2VKIT_DISTS_WEIGHTS."),
    skip: str = typer.Option("", "--skip", help="Metric families not to compute: lpips,dists,fvd,probe,diversity."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the report (a list: several) as JSON."),
    markdown_path: Path | None = typer.Option(None, "--markdown", help="Also write a Markdown table."),
) -> None:
    """The paper's Table 1 metrics for a stage-1 run (PSNR, SSIM, LPIPS, DISTS, FVD, KVD of
    reconstructions) and Table 2 metrics for a text-to-video run (bucket PSNR/SSIM/LPIPS/DISTS, FVD,
    KVD); the semantic probe's faithfulness (share of videos showing what the caption says, beside
    its accuracy on real clips; trained once per data set and cached); with --num-per-prompt K ≥ 2
    the diversity of K videos per prompt against K real ones (ratio 1 = as varied as the data).
    Metrics whose weights are not given are listed as skipped, with the reason.

    [dim]Examples:[/]
      t2vkit evaluate runs/wae3d --dataset data/syncdraw
      t2vkit evaluate runs/progressive --dataset data/syncdraw --json progressive.json --markdown table.md
      t2vkit evaluate runs/wae3d runs/progressive runs/clip --dataset data/syncdraw --markdown table.md
      t2vkit evaluate runs/diffusion --dataset data/syncdraw --num-per-prompt 8 --latent-run runs/wae3d
      t2vkit evaluate runs/prior --dataset data/syncdraw --split val --cfg 3 --skip fvd
      t2vkit evaluate runs/wae3d --dataset data/syncdraw --i3d i3d_kinetics400.safetensors --fvd-videos 1024
      t2vkit evaluate runs/progressive --dataset data/syncdraw --skip fvd,probe
    """
    from t2vkit.cli import console
    from t2vkit.cli.progress import progress_bar
    from t2vkit.evaluate import EvalOptions, evaluate_runs, markdown
    from t2vkit.fsutil import atomic_write_json, atomic_write_text
    from t2vkit.metrics.suite import WeightPaths

    weights = WeightPaths(i3d, lpips_backbone, lpips_heads, dists_backbone, dists_weights)
    sampling = {k: v for k, v in {"steps": steps, "cfg": cfg, "mg_alpha": mg_alpha}.items() if v is not None}
    options = EvalOptions(split=split, num_per_prompt=num_per_prompt, seed=seed, device=device, latent_run=latent_run,
                          fvd_videos=fvd_videos, weights=weights, sampling=sampling,
                          skip=frozenset(name.strip() for name in skip.split(",") if name.strip()))  # fmt: skip
    with progress_bar() as report_progress:
        reports = evaluate_runs(runs, dataset, options, progress=report_progress)
    for report in reports:
        _print(report)
    if json_path:
        payload = [r.as_dict() for r in reports]
        atomic_write_json(json_path, payload[0] if len(payload) == 1 else payload)
    if markdown_path:
        atomic_write_text(markdown_path, markdown(reports))
    if json_path or markdown_path:
        console.print(" ".join(str(p) for p in (json_path, markdown_path) if p))


def _print(report: Report) -> None:
    from rich.table import Table

    from t2vkit.cli import console
    from t2vkit.report import cell, order, reference_label

    table = Table(title=f"{report.run} on {report.dataset} ({report.split}, {report.clips} clips)")
    table.add_column("metric")
    table.add_column("mean ± std", justify="right")
    for name in sorted(report.metrics, key=order):
        table.add_row(name, cell(report.metrics[name], ".4f", ".4f"))
    for name, why in report.skipped.items():
        table.add_row(name, f"[dim]skipped: {why}[/]")
    for reference, values in report.references.items():
        for name, value in values.items():
            table.add_row(f"[dim]{name} of the {reference_label(reference)}[/]", f"[dim]{value:.4f}[/]")
    console.print(table)
    for task, accuracy in report.probe.get("generated", {}).items():
        real = report.probe.get("real", {}).get(task)
        console.print(f"probe {task}: {accuracy:.1%} of the videos as their caption says"
                      + (f" (real clips: {real:.1%})" if real is not None else ""))  # fmt: skip
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
