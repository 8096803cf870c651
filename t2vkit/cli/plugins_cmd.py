"""``t2vkit plugins``: every registered plugin, by kind, with the package it came from."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)


def plugins(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
) -> None:
    """List the registered encoders, decoders, aligners, samplers, data sets and plugin commands.

    Plugins come from the [bold]t2vkit[/] entry-point group (built-ins included). A plugin that
    failed to load is listed with its error; the others keep working.

    [dim]Examples:[/]
      t2vkit plugins
      t2vkit plugins --json | jq '.[] | select(.kind == "encoder")'
      T2VKIT_LOAD_PLUGINS=t2vkit t2vkit plugins   [dim]# built-ins only[/]
    """
    from rich.markup import escape
    from rich.table import Table

    from t2vkit.cli import console
    from t2vkit.registry import commands, get_registry

    registry = get_registry()
    rows = []
    for entry in registry:
        twins = registry.entries[entry.kind][entry.name]
        status = "ok"
        if len(twins) > 1:
            others = ", ".join(e.origin.package for e in twins if e is not entry)
            status = f"conflict: also registered by {others}"
        rows.append({"kind": entry.kind, "name": entry.name, "package": entry.origin.package,
                     "version": entry.origin.version, "status": status})  # fmt: skip
    for name, origin in commands:
        rows.append({"kind": "command", "name": name, "package": origin.package, "version": origin.version,
                     "status": "ok"})  # fmt: skip
    for failure in registry.failures:
        rows.append({"kind": failure.kind or "?", "name": failure.origin.plugin, "package": failure.origin.package,
                     "version": failure.origin.version, "status": "failed", "error": failure.error})  # fmt: skip

    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="t2vkit plugins")
    for column in ("kind", "name", "package", "version", "status"):
        table.add_column(column)
    for row in rows:
        status = row["status"] if row["status"] != "failed" else f"[red]failed: {escape(row['error'])}[/]"
        if row["status"].startswith("conflict"):
            status = f"[yellow]{row['status']}[/]"
        table.add_row(row["kind"], row["name"], row["package"], row["version"], status)
    console.print(table)
