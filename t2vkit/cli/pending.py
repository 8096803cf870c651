"""Sub-commands whose issues have not landed yet: they say so, and never fake a result."""

from __future__ import annotations

import typer

from t2vkit.errors import T2VError

PENDING = {
    "latents": "latent-space figures land with the evaluation issue",
}


def register(app: typer.Typer) -> None:
    for name, why in PENDING.items():
        _add(app, name, why)


def _add(app: typer.Typer, name: str, why: str) -> None:
    def command(ctx: typer.Context) -> None:
        raise T2VError(f"`t2vkit {name}` is not yet available in t2vkit: {why}")

    command.__doc__ = f"Not yet available: {why}."
    settings = {"allow_extra_args": True, "ignore_unknown_options": True}
    app.command(name, context_settings=settings)(command)
