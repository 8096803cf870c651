"""The plugin manager: discovers plugins through the ``t2vkit`` entry-point group and keeps,
per kind, the name → factory table that every command looks names up in.

Built-in plugins come through that same group (see pyproject.toml), so they have no privilege a
third-party package lacks. ``T2VKIT_LOAD_PLUGINS=a,b`` loads only the entry points whose
distribution or entry-point name is listed (an empty value loads none).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from t2vkit import hookspecs
from t2vkit.errors import PluginError
from t2vkit.interfaces import KINDS

ENTRY_POINT_GROUP = "t2vkit"

pm = pluggy.PluginManager("t2vkit")
pm.add_hookspecs(hookspecs)


@dataclass(frozen=True)
class Origin:
    """Where a plugin came from: its plugin-manager name and the distribution that ships it."""

    plugin: str
    package: str
    version: str


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    factory: Any
    origin: Origin


@dataclass(frozen=True)
class Failure:
    """A plugin that could not be imported, or whose register hook raised."""

    origin: Origin
    kind: str | None  # None: the import itself failed
    error: str
    details: str  # the traceback, shown with --debug


@dataclass
class Registry:
    entries: dict[str, dict[str, list[Entry]]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failures: list[Failure] = field(default_factory=list)

    def get(self, kind: str, name: str) -> Entry:
        """The entry registered as ``name``; an unknown or doubly registered name is a PluginError."""
        found = self.entries[kind].get(name)
        if not found:
            known = ", ".join(sorted(self.entries[kind])) or "none"
            raise PluginError(f"unknown {kind} {name!r}; available {kind}s: {known}")
        if len(found) > 1:
            who = " and ".join(f"{e.origin.package} ({e.origin.plugin})" for e in found)
            raise PluginError(f"{kind} {name!r} is registered by both {who}; uninstall one of them")
        return found[0]

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def __iter__(self) -> Iterator[Entry]:
        for kind in KINDS:
            for name in sorted(self.entries[kind]):
                yield from self.entries[kind][name]


_loaded = False
_origins: dict[str, Origin] = {}
_load_failures: list[Failure] = []
_registry: Registry | None = None


def _wanted(ep: metadata.EntryPoint) -> bool:
    allowed = os.environ.get("T2VKIT_LOAD_PLUGINS")
    if allowed is None:
        return True
    names = {n.strip() for n in allowed.split(",") if n.strip()}
    dist = ep.dist.name if ep.dist else ""
    return ep.name in names or dist in names


def load_plugins() -> None:
    """Import every plugin of the entry-point group once; failures are recorded, not raised."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if not _wanted(ep):
            continue
        dist = ep.dist
        origin = Origin(
            plugin=ep.name,
            package=dist.name if dist else "?",
            version=dist.version if dist else "?",
        )
        if pm.has_plugin(ep.name):
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:
            _load_failures.append(Failure(origin, None, _describe(exc), traceback.format_exc()))
            continue
        _origins[ep.name] = origin


def register_plugin(plugin: Any, name: str, package: str = "(registered in code)") -> None:
    """Register a plugin object directly, as tests and notebooks do."""
    pm.register(plugin, name=name)
    _origins[name] = Origin(plugin=name, package=package, version="")
    refresh()


def unregister_plugin(name: str) -> None:
    pm.unregister(name=name)
    _origins.pop(name, None)
    refresh()


def refresh() -> None:
    """Forget the cached registry so the next :func:`get_registry` asks every plugin again."""
    global _registry
    _registry = None


def get_registry() -> Registry:
    """Ask every plugin's register hooks once and cache the tables."""
    global _registry
    if _registry is not None:
        return _registry
    load_plugins()
    registry = Registry(failures=list(_load_failures))
    for kind in KINDS:
        hook = getattr(pm.hook, f"register_{kind}s")
        for impl in hook.get_hookimpls():
            origin = _origins.get(impl.plugin_name) or Origin(impl.plugin_name, "?", "")

            def register(name: str, factory: Any, _kind: str = kind, _origin: Origin = origin) -> None:
                entry = Entry(_kind, name, factory, _origin)
                registry.entries[_kind].setdefault(name, []).append(entry)

            try:
                impl.function(**_args(impl, register=register))
            except Exception as exc:
                registry.failures.append(Failure(origin, kind, _describe(exc), traceback.format_exc()))
    _registry = registry
    return registry


def get(kind: str, name: str) -> Entry:
    return get_registry().get(kind, name)


def create(kind: str, name: str, config: Any = None) -> Any:
    """Build the ``kind`` plugin ``name`` with ``config`` (its ``Config`` dataclass, a dict, or None)."""
    from t2vkit.config import from_dict

    factory = get(kind, name).factory
    config_cls = getattr(factory, "Config", None)
    if config_cls is None:
        raise PluginError(f"{kind} {name!r} has no Config dataclass; see t2vkit.interfaces")
    if config is None or isinstance(config, dict):
        config = from_dict(config_cls, config or {}, where=f"{kind} {name}")
    return factory(config)


def add_plugin_commands(cli: Any) -> None:
    """Let every plugin add sub-commands to the Typer app (at start-up, so cheap imports only)."""
    load_plugins()
    for impl in pm.hook.register_commands.get_hookimpls():
        try:
            impl.function(**_args(impl, cli=cli))
        except Exception as exc:
            origin = _origins.get(impl.plugin_name) or Origin(impl.plugin_name, "?", "")
            _load_failures.append(Failure(origin, "command", _describe(exc), traceback.format_exc()))


def _args(impl: Any, **available: Any) -> dict[str, Any]:
    """The keyword arguments a hook implementation asked for (pluggy lets it take fewer)."""
    return {k: v for k, v in available.items() if k in impl.argnames}


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
