"""User-facing errors: the command line prints their message as one line, without a traceback."""


class T2VError(Exception):
    """Something the user can fix: bad input, a missing file, an unknown name."""


class PluginError(T2VError):
    """An unknown plugin name, a name registered twice, or a plugin that failed to load."""


class ConfigError(T2VError):
    """A config file or ``--set`` override that does not fit the config's fields."""


class CheckpointError(T2VError):
    """A missing, corrupt or mismatched run directory or checkpoint file."""


class DataError(T2VError):
    """Missing or malformed raw data, or a prepared data set that does not fit."""
