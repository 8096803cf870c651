"""The default model: a trained run (``config.json`` and its ``*.safetensors`` components) shipped inside the
package, which ``t2vkit generate`` uses when no ``--model`` is given. ``examples/package_default_model.py RUN_DIR``
puts a run's files here."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from t2vkit.errors import T2VError


def path() -> Path:
    """The folder holding the packaged run (a run directory ``Pipeline.from_run`` can load)."""
    return Path(str(resources.files(__name__)))


def require() -> Path:
    """:func:`path`, or a :class:`T2VError` when this copy of t2vkit holds no model files (a development checkout
    before they are added)."""
    folder = path()
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise T2VError(f"no --model given, and this t2vkit has no default model ({folder} holds no config.json and "
                       "*.safetensors files): pass --model RUN_DIR, a stage-2 (align) or diffusion run")  # fmt: skip
    return folder
