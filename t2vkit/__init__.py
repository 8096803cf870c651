"""t2vkit: a plugin-based toolkit for text-to-video generation.

Plugin authors need one import::

    from t2vkit import hookimpl

Importing this package is cheap (no torch): the command line's start-up depends on it.
"""

from pathlib import Path

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("t2vkit")

# Installed, plugins/ and exporters/ are t2vkit.plugins and t2vkit.exporters (see pyproject.toml).
# Imported from a source checkout (Python started in the repository root), they sit beside this
# folder: let the package path reach them so the same names resolve there too.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "plugins" / "__init__.py").is_file():
    __path__.append(str(_checkout))

__all__ = ["__version__", "hookimpl"]
