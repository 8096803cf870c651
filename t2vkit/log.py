"""t2vkit's logger. Library code calls ``log.warning(...)``; the command line prints each record as
one ``warning: ...`` line on stderr, and tests read them with pytest's ``caplog``."""

from __future__ import annotations

import logging

log = logging.getLogger("t2vkit")


class _OneLine(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        from rich.markup import escape

        from t2vkit.cli import err_console

        style = {"WARNING": "yellow", "ERROR": "red"}.get(record.levelname, "dim")
        err_console.print(f"[{style}]{record.levelname.lower()}:[/] {escape(record.getMessage())}", soft_wrap=True)


def setup_cli_logging(verbose: bool = False) -> None:
    """Route t2vkit's records to stderr, one line each (called once by the command line)."""
    if not any(isinstance(h, _OneLine) for h in log.handlers):
        log.addHandler(_OneLine())
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
