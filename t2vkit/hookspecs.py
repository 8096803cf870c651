"""The hook specifications: one hook per plugin kind, each handed a ``register`` callback.

A plugin module implements any of these with ``@t2vkit.hookimpl`` and is announced through the
``t2vkit`` entry-point group. ``register(name, factory)`` takes a class implementing the kind's
interface from :mod:`t2vkit.interfaces`; the class is built later, only when a command asks for
it, so registering is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("t2vkit")

Register = Callable[[str, Any], None]


@hookspec
def register_encoders(register: Register) -> None:
    """Register text encoders (:class:`t2vkit.interfaces.TextEncoder`)."""


@hookspec
def register_decoders(register: Register) -> None:
    """Register video autoencoders (:class:`t2vkit.interfaces.VideoAutoencoder`)."""


@hookspec
def register_aligners(register: Register) -> None:
    """Register text-to-video-latent aligners (:class:`t2vkit.interfaces.Aligner`)."""


@hookspec
def register_samplers(register: Register) -> None:
    """Register samplers (:class:`t2vkit.interfaces.Sampler`)."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register data set builders (:class:`t2vkit.interfaces.DatasetBuilder`)."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add sub-commands to the Typer app ``cli`` (runs at start-up: keep it free of heavy imports)."""
