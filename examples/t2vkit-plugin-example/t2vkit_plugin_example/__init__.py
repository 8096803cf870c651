"""An example t2vkit plugin: the ``shapes`` data set, the ``hashing`` text encoder and the
``t2vkit shapes-preview`` command.

t2vkit imports this module at every start-up (it is the ``t2vkit`` entry point in pyproject.toml),
so it imports nothing heavy: each hook imports its class only when it runs.
"""

from __future__ import annotations

from typing import Any

from t2vkit import hookimpl
from t2vkit.hookspecs import Register


@hookimpl
def register_datasets(register: Register) -> None:
    from .shapes import Shapes

    register("shapes", Shapes)


@hookimpl
def register_encoders(register: Register) -> None:
    from .hashing import HashingEncoder

    register("hashing", HashingEncoder)


@hookimpl
def register_commands(cli: Any) -> None:
    from .preview import shapes_preview

    cli.command("shapes-preview")(shapes_preview)
