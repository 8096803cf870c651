"""``t2vkit latents``: PCA / t-SNE / UMAP pictures of a run's text, shared and video latent spaces."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("latents")(latents)


def latents(
    run: Path = typer.Argument(..., help="A run directory (stage 1, align or diffusion)."),
    dataset: Path = typer.Option(..., "--dataset", help="The prepared data set whose clips are drawn."),
    out: Path = typer.Option(..., "--out", help="Folder for the PNGs (SPACE-METHOD.png)."),
    methods: str = typer.Option("pca,tsne,umap", "--methods", help="Comma-separated: pca, tsne, umap."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    per_bucket: int = typer.Option(50, "--per-bucket", help="Clips drawn per bucket (0: every clip of the split)."),
    seed: int = typer.Option(0, "--seed", help="Which clips are drawn, and the seed of t-SNE and UMAP."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
) -> None:
    """PCA / t-SNE / UMAP pictures of a run's latent spaces, like the paper's Figures 2–5.

    One PNG per space and method, coloured by bucket: the text space (the encoder's caption
    embeddings z_t), the shared semantic space (M(z_t) vs E_s(z_v), for aligners that have one) and
    the video latent space (the mapped G_s(M(z_t)) vs the stage-1 encoder's E_v(x)). A stage-1 run
    draws its real clips' latents only.

    t-SNE runs on 32 PCA components with perplexity 40 and 600 iterations (the paper's A.3.2). Needs
    matplotlib and scikit-learn, and umap-learn for UMAP: pip install "t2vkit\\[viz]".

    [dim]Examples:[/]
      t2vkit latents runs/progressive --dataset data/syncdraw --out figures/progressive
      t2vkit latents runs/wae3d --dataset data/syncdraw --out figures/wae3d --methods pca,tsne --per-bucket 100
    """
    from t2vkit.cli import console
    from t2vkit.latents import LatentsConfig
    from t2vkit.latents import latents as draw_latents

    config = LatentsConfig(methods=tuple(methods.split(",")), split=split, per_bucket=per_bucket, seed=seed,
                           device=device)  # fmt: skip
    result = draw_latents(run, dataset, out, config, echo=lambda line: console.print(line, highlight=False))
    for note in result.notes:
        console.print(f"[dim]skipped {note}[/]", highlight=False)
    console.print(f"{len(result.paths)} figures of {result.clips} clips in {out}", highlight=False)
