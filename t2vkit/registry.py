"""The plugin manager: discovers plugins through the ``t2vkit`` entry-point group and keeps,
per kind, the name → factory table that every command looks names up in.

Built-in plugins come through that same group (see pyproject.toml), so they have no privilege a
third-party package lacks. ``T2VKIT_LOAD_PLUGINS=a,b`` loads only the entry points whose
distribution or entry-point name is listed (an empty value loads none).
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
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


class Registry:
    """Per kind, name → entries. A kind's table is built the first time it is asked for, so that
    a command needing only data sets never imports the encoders' (torch-heavy) modules."""

    def __init__(self, load_failures: list[Failure]) -> None:
        self._tables: dict[str, dict[str, list[Entry]]] = {}
        self._failures = list(load_failures)

    def table(self, kind: str) -> dict[str, list[Entry]]:
        if kind not in KINDS:
            raise PluginError(f"unknown plugin kind {kind!r}; kinds are {', '.join(KINDS)}")
        if kind not in self._tables:
            self._tables[kind] = _collect(kind, self._failures)
        return self._tables[kind]

    @property
    def entries(self) -> dict[str, dict[str, list[Entry]]]:
        """Every kind's table (builds them all)."""
        return {kind: self.table(kind) for kind in KINDS}

    @property
    def failures(self) -> list[Failure]:
        """Import failures, and register-hook failures of every kind (builds them all)."""
        self.entries  # noqa: B018  (building the tables records their failures)
        return list(self._failures)

    def get(self, kind: str, name: str) -> Entry:
        """The entry registered as ``name``; an unknown or doubly registered name is a PluginError."""
        table = self.table(kind)
        found = table.get(name)
        if not found:
            known = ", ".join(sorted(table)) or "none"
            raise PluginError(f"unknown {kind} {name!r}; available {kind}s: {known}")
        if len(found) > 1:
            who = [f"{e.origin.package} ({e.origin.plugin})" for e in found]
            listed = " and ".join(who) if len(who) == 2 else ", ".join(who[:-1]) + " and " + who[-1]
            raise PluginError(f"{kind} {name!r} is registered by {'both ' if len(who) == 2 else ''}{listed}; "
                              "uninstall all but one of them")
        return found[0]

    def names(self, kind: str) -> list[str]:
        return sorted(self.table(kind))

    def __iter__(self) -> Iterator[Entry]:
        for kind in KINDS:
            table = self.table(kind)
            for name in sorted(table):
                yield from table[name]


_loaded = False
_origins: dict[str, Origin] = {}
_load_failures: list[Failure] = []
_registry: Registry | None = None


def _normalise(name: str) -> str:
    """PEP 503: case and runs of -, _ and . do not distinguish distribution names."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _wanted(ep: metadata.EntryPoint) -> bool:
    allowed = os.environ.get("T2VKIT_LOAD_PLUGINS")
    if allowed is None:
        return True
    names = {_normalise(n.strip()) for n in allowed.split(",") if n.strip()}
    dist = ep.dist.name if ep.dist else ""
    return _normalise(ep.name) in names or _normalise(dist) in names


def load_plugins() -> None:
    """Import every plugin of the entry-point group once; failures are recorded, not raised.

    A plugin is known to the plugin manager as ``distribution:entry-point``, so two packages may
    both name an entry point ``datasets`` without one hiding the other.
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if not _wanted(ep):
            continue
        dist = ep.dist
        package = dist.name if dist else "?"
        origin = Origin(plugin=ep.name, package=package, version=dist.version if dist else "?")
        key = f"{package}:{ep.name}"
        if pm.has_plugin(key):
            continue  # the same distribution seen twice on sys.path
        try:
            module = ep.load()
            pm.register(module, name=key)
        except Exception as exc:
            _load_failures.append(Failure(origin, None, _describe(exc), traceback.format_exc()))
            continue
        _origins[key] = origin


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
    """The cached registry (its tables are filled kind by kind, on first use)."""
    global _registry
    if _registry is None:
        load_plugins()
        _registry = Registry(_load_failures)
    return _registry


def _collect(kind: str, failures: list[Failure]) -> dict[str, list[Entry]]:
    """Ask every plugin's ``register_<kind>s`` hook for its entries.

    A hook's entries count only if the whole hook succeeds and each factory implements the
    kind's interface; otherwise the plugin is listed as failed and its partial work dropped.
    """
    from t2vkit import interfaces

    interface = {"encoder": interfaces.TextEncoder, "decoder": interfaces.VideoAutoencoder,
                 "aligner": interfaces.Aligner, "sampler": interfaces.Sampler,
                 "dataset": interfaces.DatasetBuilder}[kind]  # fmt: skip
    table: dict[str, list[Entry]] = {}
    for impl in getattr(pm.hook, f"register_{kind}s").get_hookimpls():
        origin = _origins.get(impl.plugin_name) or Origin(impl.plugin_name, "?", "")
        pending: list[Entry] = []

        def register(name: str, factory: Any, _origin: Origin = origin, _pending: list[Entry] = pending) -> None:
            if not (isinstance(factory, type) and issubclass(factory, interface)):
                expected = f"t2vkit.interfaces.{interface.__name__}"
                raise PluginError(f"{kind} {name!r}: {factory!r} is not a subclass of {expected}")
            _pending.append(Entry(kind, name, factory, _origin))

        try:
            impl.function(**_args(impl, register=register))
        except Exception as exc:
            failures.append(Failure(origin, kind, _describe(exc), traceback.format_exc()))
            continue
        for entry in pending:
            table.setdefault(entry.name, []).append(entry)
    return table


def get(kind: str, name: str) -> Entry:
    return get_registry().get(kind, name)


def create(kind: str, name: str, config: Any = None) -> Any:
    """Build the ``kind`` plugin ``name`` with ``config`` (its ``Config`` dataclass, a dict, or None)."""
    from t2vkit.config import from_dict

    factory = get(kind, name).factory
    if config is None or isinstance(config, dict):
        config = from_dict(factory.Config, config or {}, where=f"{kind} {name}")
    return factory(config)


# Sub-commands added by plugins, as (command name, origin), for `t2vkit plugins`.
commands: list[tuple[str, Origin]] = []


def add_plugin_commands(cli: Any) -> None:
    """Let every plugin add sub-commands to the Typer app (at start-up, so cheap imports only).

    A plugin may not replace a command that already exists: its command is dropped and the
    plugin listed as failed.
    """
    load_plugins()
    for impl in pm.hook.register_commands.get_hookimpls():
        origin = _origins.get(impl.plugin_name) or Origin(impl.plugin_name, "?", "")
        taken = {_command_name(c) for c in cli.registered_commands} | {g.name for g in cli.registered_groups}
        before = len(cli.registered_commands)
        try:
            impl.function(**_args(impl, cli=cli))
        except Exception as exc:
            del cli.registered_commands[before:]
            _load_failures.append(Failure(origin, "command", _describe(exc), traceback.format_exc()))
            continue
        added = cli.registered_commands[before:]
        clashes = [c for c in added if _command_name(c) in taken]
        for command in clashes:
            cli.registered_commands.remove(command)
            _load_failures.append(Failure(origin, "command", f"command {_command_name(command)!r} already exists", ""))
        commands.extend((_command_name(c), origin) for c in added if c not in clashes)


def _command_name(info: Any) -> str:
    """A Typer CommandInfo's name: given, or derived from the function as Typer does."""
    return info.name or info.callback.__name__.lower().replace("_", "-")


def _args(impl: Any, **available: Any) -> dict[str, Any]:
    """The keyword arguments a hook implementation asked for (pluggy lets it take fewer)."""
    return {k: v for k, v in available.items() if k in impl.argnames}


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
