"""One progress bar for the long phases of a command (preparing data, training the probe, scoring)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

Report = Callable[[str, int | None, int], None]


def progress_bar() -> AbstractContextManager[Report]:
    """A rich progress bar driven by the writer's (description, total, advance) reports.

    The bar appears with the first report, so a command that fails early prints only its error.
    """
    import contextlib

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from t2vkit.cli import err_console

    @contextlib.contextmanager
    def manager():
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
        bar = Progress(*columns, console=err_console)
        task = None

        def report(description: str, total: int | None, advance: int) -> None:
            nonlocal task
            if description:
                if task is None:
                    bar.start()
                else:
                    bar.update(task, completed=bar.tasks[task].total or bar.tasks[task].completed)
                task = bar.add_task(description, total=total)
            elif task is not None:
                bar.advance(task, advance)

        try:
            yield report
        finally:
            if task is not None:
                bar.stop()

    return manager()
