"""t2vkit's built-in plugins, registered through the ``t2vkit`` entry-point group exactly like
third-party plugins (see pyproject.toml). Installed as ``t2vkit.plugins``."""
