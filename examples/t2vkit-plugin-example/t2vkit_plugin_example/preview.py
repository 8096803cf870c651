"""``t2vkit shapes-preview``: a PNG contact sheet of a few ``shapes`` clips, one clip per row.

Imported at every t2vkit start-up (by the register_commands hook), so only typer at module level;
numpy and the data set are imported when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def shapes_preview(
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("shapes-preview.png"),
    count: Annotated[int, typer.Option("--count", min=1, help="Number of clips (rows of the sheet).")] = 6,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the data set (same seed, same clips).")] = 0,
    scale: Annotated[
        int, typer.Option("--scale", min=1, max=8, help="Enlarge each frame this many times.")
    ] = 1,
) -> None:
    """Draw the first clips of the [bold]shapes[/] data set as a contact sheet, one frame per column.

    The rows are the first training clips that `t2vkit data prepare shapes --seed SEED` writes.

    [dim]Example:[/]  t2vkit shapes-preview --out sheet.png --count 8 --scale 2
    """
    from t2vkit.video_io import contact_sheet, upscale, write_png

    from .shapes import Shapes, ShapesConfig

    clips = list(Shapes(ShapesConfig(seed=seed)).clips("train", count))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, contact_sheet([upscale(clip, scale) for clip, _, _ in clips]))
    for row, (_, text, _) in enumerate(clips):
        typer.echo(f"row {row}: {text}")
    typer.echo(f"wrote {out}")
