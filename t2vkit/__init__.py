"""t2vkit: a plugin-based toolkit for text-to-video generation.

Plugin authors need one import::

    from t2vkit import hookimpl

Importing this package is cheap (no torch): the command line's start-up depends on it.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("t2vkit")

__all__ = ["__version__", "hookimpl"]
