"""``t2vkit data``: prepare data sets from raw files, and describe prepared ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

data_app = typer.Typer(help="Prepare data sets and inspect prepared ones.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("prepare")
def prepare(
    name: str = typer.Argument(..., help="Dataset plugin: syncdraw-mm, kth, tacos, folder, or a third-party one."),
    out: Path = typer.Option(..., "--out", help="Folder to write the prepared data set to."),
    mnist: Path | None = typer.Option(None, help="syncdraw-mm: folder with the four MNIST IDX files."),
    kth: Path | None = typer.Option(None, help="kth: folder with person*_*_d*_uncomp.avi and 00sequences.txt."),
    annotations: Path | None = typer.Option(None, help="tacos: folder with train/val/test.json."),
    videos: Path | None = typer.Option(None, help="tacos: folder of sXX-dYY.avi; folder: the video folder."),
    num_train: int | None = typer.Option(None, help="Number of training clips (syncdraw-mm)."),
    num_val: int | None = typer.Option(None, help="Number of validation clips (syncdraw-mm)."),
    num_test: int | None = typer.Option(None, help="Number of test clips (syncdraw-mm)."),
    stride: int | None = typer.Option(None, help="Frames between consecutive clips cut from one video."),
    seed: int | None = typer.Option(None, help="Random seed; the same seed gives the same clips."),
    option: list[str] = typer.Option([], "--option", "-o", help="Any other dataset option, as key=value."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different data set already in --out."),
) -> None:
    """Build clips, captions, buckets and splits from raw files into a prepared folder.

    The folder is what [bold]train[/], [bold]evaluate[/] and [bold]latents[/] take as --dataset.
    Options a data set does not take are refused, naming the ones it does.

    [dim]Examples:[/]
      t2vkit data prepare syncdraw-mm --mnist ../shared/data/mnist --out data/syncdraw
      t2vkit data prepare syncdraw-mm --num-train 500 --num-val 100 --num-test 100 --out data/tiny
      t2vkit data prepare kth --kth ~/kth --out data/kth
      t2vkit data prepare tacos --annotations ~/tacos/ann --videos ~/tacos/videos --out data/tacos
      t2vkit data prepare folder --videos ~/my-clips --out data/mine   [dim]# needs captions.csv[/]
    """
    from t2vkit.config import parse_overrides
    from t2vkit.data.prepare import prepare as run_prepare

    given = {"mnist": mnist, "kth": kth, "annotations": annotations, "videos": videos, "num_train": num_train,
             "num_val": num_val, "num_test": num_test, "stride": stride, "seed": seed}  # fmt: skip
    options: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    for key, value in parse_overrides(option).items():
        options[key.replace("-", "_")] = value

    from t2vkit.cli.progress import progress_bar

    with progress_bar() as report:
        result = run_prepare(name, out, options, overwrite=overwrite, progress=report)
    _summarise(result)


@data_app.command("info")
def info(root: Path = typer.Argument(..., help="A prepared data set folder.")) -> None:
    """Describe a prepared data set: source, clip shape, splits, buckets, skipped items.

    [dim]Example:[/]  t2vkit data info data/syncdraw
    """
    from t2vkit.data.store import PreparedDataset

    _print_meta(PreparedDataset(root).meta, root)


def _summarise(result) -> None:
    from t2vkit.cli import console

    if result.reused:
        console.print(f"{result.root} already holds this data set (same sources and options); nothing to do.")
    else:
        console.print(f"prepared {result.root} in {result.seconds:.1f} s, {result.bytes / 2**20:.1f} MiB")
    _print_meta(result.meta, result.root)


def _print_meta(meta: dict[str, Any], root: Path) -> None:
    from rich.table import Table

    from t2vkit.cli import console

    table = Table(show_header=False, title=str(root))
    t, h, w, c = meta["clip_shape"]
    table.add_row("dataset", f"{meta['dataset']} (generator {meta.get('generator_version', '?')})")
    table.add_row("clips", f"{meta['count']}  ({t} frames of {h}×{w}, {c} channel{'s' if c > 1 else ''})")
    table.add_row("splits", ", ".join(f"{k} {v}" for k, v in meta["splits"].items()))
    table.add_row("buckets", str(meta["buckets"]))
    skipped = meta.get("skipped") or {}
    table.add_row("skipped", ", ".join(f"{n} × {reason}" for reason, n in skipped.items()) or "none")
    table.add_row("fingerprint", meta.get("fingerprint", "?")[:16])
    console.print(table)
