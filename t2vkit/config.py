"""Typed configs: dataclasses built from TOML presets, config files and ``--set`` overrides.

A preset (``t2vkit/presets/NAME.toml``) or a user's ``--config FILE.toml`` is a nested table:
sections for the training stages and, per plugin kind, one table per plugin name::

    [train.video]
    batch_size = 64

    [decoder.wae3d]
    latent_dim = 64

``--set key=value`` addresses the *resolved* config that a run writes to ``config.json``
(``--set train.lr=3e-4``, ``--set decoder.latent_dim=32``); values are read as TOML literals and
fall back to plain strings (``--set aligner.loss=bucket``).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from t2vkit.errors import ConfigError

PRESETS = ("paper", "quick")


# --------------------------------------------------------------------------- dataclass <-> dict


def from_dict(cls: type, data: Mapping[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from ``data``, checking names and coercing values to the field types.

    Unknown keys and values of the wrong type raise :class:`ConfigError` naming ``where``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(known: {', '.join(sorted(fields)) or 'none'})"
        )
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(data[name], hints[name], f"{where}.{name}") for name in data}
    return cls(**values)


def to_dict(obj: Any) -> Any:
    """A dataclass (or nested values) as plain JSON/TOML-friendly data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {hint}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            item = args[0] if args else Any
            items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin or hint) is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if hint is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    return value


# --------------------------------------------------------------------------- TOML and presets


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def load_preset(name: str) -> dict[str, Any]:
    """A shipped preset by name (``paper``, ``quick``) or a TOML file by path."""
    if name in PRESETS:
        text = resources.files("t2vkit.presets").joinpath(f"{name}.toml").read_text()
        return tomllib.loads(text)
    if Path(name).suffix == ".toml":
        return load_toml(name)
    raise ConfigError(f"unknown preset {name!r}; shipped presets: {', '.join(PRESETS)} (or a .toml path)")


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` into a copy of ``base`` (tables merge, other values replace)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["train.lr=3e-4", "aligner.loss=bucket"]`` → ``{"train": {"lr": 3e-4}, "aligner": {...}}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set expects key=value (e.g. train.lr=3e-4), got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is set both as a value and as a table")
        node[leaf] = value
    return out


def plugin_section(tables: Mapping[str, Any], kind: str, name: str) -> dict[str, Any]:
    """The options a preset or config file gives plugin ``name`` of ``kind`` (``[kind.name]``)."""
    section = tables.get(kind, {})
    value = section.get(name, {}) if isinstance(section, Mapping) else {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{kind}.{name}] must be a table")
    return dict(value)


def differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested configs."""
    keys = sorted(set(a) | set(b))
    out = []
    for key in keys:
        path = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += differences(va, vb, path + ".")
        elif va != vb:
            out.append(path)
    return out
