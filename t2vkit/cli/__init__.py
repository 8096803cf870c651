"""The ``t2vkit`` command line.

Sub-commands live in their own modules and import torch and friends inside their bodies, so that
``t2vkit --help`` stays fast. Errors print as one line; ``--debug`` (or ``T2VKIT_DEBUG=1``)
shows the traceback instead.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from t2vkit import __version__
from t2vkit.errors import T2VError

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="t2vkit",
    help="A plugin-based toolkit for text-to-video generation: prepare data, train, export, generate, evaluate.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)

_debug = os.environ.get("T2VKIT_DEBUG", "") not in ("", "0")


def _version(value: bool) -> None:
    if value:
        console.print(f"t2vkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    global _debug
    _debug = _debug or debug


def _register_builtin_commands() -> None:
    from t2vkit.cli import (
        bench_cmd,
        data_cmd,
        evaluate_cmd,
        export_cmd,
        generate_cmd,
        latents_cmd,
        plugins_cmd,
        train_cmd,
    )

    plugins_cmd.register(app)
    data_cmd.register(app)
    train_cmd.register(app)
    generate_cmd.register(app)
    export_cmd.register(app)
    evaluate_cmd.register(app)
    bench_cmd.register(app)
    latents_cmd.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    from t2vkit.log import setup_cli_logging
    from t2vkit.registry import add_plugin_commands

    setup_cli_logging()
    _register_builtin_commands()
    add_plugin_commands(app)
    try:
        app(args=argv)
    except T2VError as exc:
        _fail(str(exc), exc)
    except Exception as exc:
        _fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", exc)


def _fail(message: str, exc: BaseException) -> None:
    if _debug:
        raise exc
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(1)
