"""The plugin system itself, with throwaway plugins: discovery, lookup, conflicts, failures, configs.

Plugins registered in code are always unregistered again (the ``plugins`` fixture). Discovery
through entry points is tested in subprocesses, against throwaway distributions written into a
folder on PYTHONPATH: importlib.metadata finds them exactly as it finds installed packages, and
the test process's registry is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from t2vkit import hookimpl, registry
from t2vkit.cli.plugins_cmd import plugins as plugins_command
from t2vkit.data import PreparedDataset
from t2vkit.data.prepare import prepare
from t2vkit.errors import ConfigError, PluginError
from t2vkit.hookspecs import Register
from t2vkit.interfaces import ClipSink, DatasetBuilder, TextEmbedding, TextEncoder

BUILTIN_DATASET = "syncdraw-mm"

# --------------------------------------------------------------------------- throwaway plugins


@dataclass
class DotsConfig:
    clips: int = 1
    caption: str = "a dot"


class Dots(DatasetBuilder):
    """A data set of ``clips`` blank 2-frame 4×4 clips, all captioned ``caption``."""

    Config = DotsConfig

    def sources(self) -> dict[str, Path]:
        return {}

    def build(self, sink: ClipSink) -> None:
        for _ in range(self.config.clips):
            sink.add(
                np.zeros((2, 4, 4, 1), np.uint8),
                self.config.caption,
                bucket=self.config.caption,
                split="train",
            )


class WordCount(TextEncoder):
    """Embeds a text as (number of words, 1)."""

    dim = 2
    max_length = 64
    identity = "word-count"

    def __init__(self, config: Any) -> None:
        self.config = config

    def encode(self, texts: Sequence[str]) -> TextEmbedding:
        import torch

        pooled = torch.tensor([[float(len(t.split())), 1.0] for t in texts])
        return TextEmbedding(pooled, pooled[:, None], torch.ones(len(texts), 1, dtype=torch.bool))


class DatasetAndEncoder:
    @hookimpl
    def register_datasets(self, register: Register) -> None:
        register("dots", Dots)

    @hookimpl
    def register_encoders(self, register: Register) -> None:
        register("word-count", WordCount)


class Registers:
    """A plugin registering the given ``{name: factory}`` data sets."""

    def __init__(self, datasets: dict[str, Any]) -> None:
        self.datasets = datasets

    @hookimpl
    def register_datasets(self, register: Register) -> None:
        for name, factory in self.datasets.items():
            register(name, factory)


class RaisesInDatasetHook:
    @hookimpl
    def register_datasets(self, register: Register) -> None:
        raise RuntimeError("needs a GPU to register")

    @hookimpl
    def register_encoders(self, register: Register) -> None:
        register("survivor", WordCount)


@pytest.fixture
def plugins() -> Iterator[Callable[[Any, str, str], None]]:
    """``add(plugin, name, package)`` registers a plugin for this test only."""
    added: list[str] = []

    def add(plugin: Any, name: str, package: str) -> None:
        registry.register_plugin(plugin, name=name, package=package)
        added.append(name)

    yield add
    for name in reversed(added):
        if registry.pm.has_plugin(name):
            registry.unregister_plugin(name)
    registry.refresh()


def plugins_json(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """What ``t2vkit plugins --json`` prints for this process's registry."""
    capsys.readouterr()
    plugins_command(as_json=True)
    return json.loads(capsys.readouterr().out)


# --------------------------------------------------------------------------- registration and lookup


def test_a_registered_plugin_shows_up_by_kind_and_name(plugins, capsys) -> None:
    plugins(DatasetAndEncoder(), "throwaway", "throwaway-pkg")
    dots = registry.get("dataset", "dots")
    assert dots.factory is Dots and dots.kind == "dataset"
    assert (dots.origin.plugin, dots.origin.package) == ("throwaway", "throwaway-pkg")
    assert registry.get("encoder", "word-count").factory is WordCount
    assert "dots" not in registry.get_registry().names("encoder")

    rows = {(r["kind"], r["name"]): r for r in plugins_json(capsys)}
    assert rows["dataset", "dots"]["package"] == rows["encoder", "word-count"]["package"] == "throwaway-pkg"
    assert rows["dataset", BUILTIN_DATASET]["status"] == "ok"

    registry.unregister_plugin("throwaway")
    assert "dots" not in registry.get_registry().names("dataset")


def test_an_unknown_name_lists_the_available_ones(plugins) -> None:
    plugins(DatasetAndEncoder(), "throwaway", "throwaway-pkg")
    with pytest.raises(PluginError, match="unknown dataset 'no-such-data'") as caught:
        registry.get("dataset", "no-such-data")
    assert "dots" in str(caught.value) and BUILTIN_DATASET in str(caught.value)
    with pytest.raises(PluginError, match="word-count"):
        registry.create("encoder", "no-such-encoder")


def test_a_registered_data_set_prepares_end_to_end(plugins, tmp_path: Path) -> None:
    plugins(DatasetAndEncoder(), "throwaway", "throwaway-pkg")
    result = prepare("dots", tmp_path / "dots", {"clips": 3, "caption": "three dots"})
    data = PreparedDataset(result.root)
    assert len(data) == 3 and data.unique_captions() == ["three dots"]
    assert data.meta["generator"] == "throwaway-pkg"


def test_a_name_registered_twice_is_an_error_naming_both_packages(plugins, capsys) -> None:
    plugins(Registers({"twin": Dots, "alpha-only": Dots}), "alpha", "pkg-alpha")
    plugins(Registers({"twin": Dots}), "beta", "pkg-beta")

    for use in (lambda: registry.get("dataset", "twin"), lambda: registry.create("dataset", "twin")):
        with pytest.raises(PluginError, match="twin") as caught:
            use()
        assert "pkg-alpha" in str(caught.value) and "pkg-beta" in str(caught.value)

    assert registry.get("dataset", "alpha-only").origin.package == "pkg-alpha"
    assert registry.get("dataset", BUILTIN_DATASET).origin.package == "t2vkit"
    rows = plugins_json(capsys)
    twins = {r["package"]: r["status"] for r in rows if r["name"] == "twin"}
    assert twins == {"pkg-alpha": "conflict: also registered by pkg-beta",
                     "pkg-beta": "conflict: also registered by pkg-alpha"}  # fmt: skip
    assert all(r["status"] == "ok" for r in rows if r["name"] in ("alpha-only", BUILTIN_DATASET))


def test_a_register_hook_that_raises_is_listed_as_failed(plugins, capsys) -> None:
    plugins(RaisesInDatasetHook(), "exploding", "pkg-exploding")
    plugins(DatasetAndEncoder(), "throwaway", "throwaway-pkg")

    [failure] = [f for f in registry.get_registry().failures if f.origin.plugin == "exploding"]
    assert (failure.kind, failure.error) == ("dataset", "RuntimeError: needs a GPU to register")
    assert failure.origin.package == "pkg-exploding" and "Traceback" in failure.details
    # The same plugin's other hooks, the other plugins and the built-ins still work.
    assert registry.get("encoder", "survivor").factory is WordCount
    assert registry.get("dataset", "dots").factory is Dots
    assert registry.get("dataset", BUILTIN_DATASET)

    [row] = [r for r in plugins_json(capsys) if r["status"] == "failed" and r["name"] == "exploding"]
    assert row == {"kind": "dataset", "name": "exploding", "package": "pkg-exploding", "version": "",
                   "status": "failed", "error": "RuntimeError: needs a GPU to register"}  # fmt: skip


# --------------------------------------------------------------------------- configs


def test_create_builds_the_factory_from_its_config(plugins) -> None:
    plugins(Registers({"dots": Dots}), "throwaway", "throwaway-pkg")

    built = registry.create("dataset", "dots", {"clips": 3.0})
    assert isinstance(built, Dots) and built.config == DotsConfig(clips=3)
    assert registry.create("dataset", "dots").config == DotsConfig()
    given = DotsConfig(clips=5, caption="five")
    assert registry.create("dataset", "dots", given).config is given

    with pytest.raises(ConfigError, match="colour") as caught:
        registry.create("dataset", "dots", {"clips": 2, "colour": "red"})
    assert "known: caption, clips" in str(caught.value)
    with pytest.raises(ConfigError, match="clips"):
        registry.create("dataset", "dots", {"clips": "many"})


def test_a_factory_that_does_not_implement_its_kind_fails_its_plugin(plugins) -> None:
    plugins(Registers({"dots": Dots, "not-a-builder": lambda config: config}), "throwaway", "throwaway-pkg")

    reg = registry.get_registry()
    [failure] = [f for f in reg.failures if f.origin.plugin == "throwaway"]
    assert failure.kind == "dataset"
    assert "'not-a-builder'" in failure.error and "t2vkit.interfaces.DatasetBuilder" in failure.error
    with pytest.raises(PluginError, match="unknown dataset 'dots'"):  # nothing of a failed hook is kept
        reg.get("dataset", "dots")


# --------------------------------------------------------------------------- entry points (subprocesses)


def fake_distribution(site: Path, dist: str, entry_point: str, module: str, source: str) -> None:
    """A distribution as pip would leave it in site-packages: a module plus its .dist-info."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[t2vkit]\n{entry_point} = {module}\n")


def run_cli(*args: str, site: Path, load: str | None = None) -> subprocess.CompletedProcess[str]:
    """The ``t2vkit`` command of this environment, with ``site`` on its path."""
    script = Path(sys.executable).with_name("t2vkit")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "t2vkit"]
    env = {k: v for k, v in os.environ.items() if k != "T2VKIT_LOAD_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    if load is not None:
        env["T2VKIT_LOAD_PLUGINS"] = load
    return subprocess.run([*command, *args], cwd=site, env=env, capture_output=True, text=True, timeout=120)


def listing(site: Path, load: str | None = None) -> list[dict[str, Any]]:
    result = run_cli("plugins", "--json", site=site, load=load)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


BROKEN = 'raise ImportError("t2vkit-broken-plugin needs libfoo, which is not installed")\n'
SMALL = """
from t2vkit import hookimpl
from t2vkit.interfaces import DatasetBuilder


class Small(DatasetBuilder):
    def sources(self):
        return {}

    def build(self, sink):
        pass


@hookimpl
def register_datasets(register):
    register("small-data", Small)
"""


def test_a_plugin_that_fails_to_import_is_reported_and_the_rest_work(tmp_path: Path) -> None:
    fake_distribution(tmp_path, "t2vkit-broken-plugin", "broken", "t2vkit_broken_plugin", BROKEN)
    fake_distribution(tmp_path, "t2vkit-small-plugin", "small", "t2vkit_small_plugin", SMALL)

    rows = listing(tmp_path)
    [failed] = [r for r in rows if r["name"] == "broken"]
    assert (failed["status"], failed["package"], failed["version"]) == (
        "failed",
        "t2vkit-broken-plugin",
        "0.1",
    )
    assert failed["error"] == "ImportError: t2vkit-broken-plugin needs libfoo, which is not installed"
    ok = {(r["name"], r["package"]) for r in rows if r["status"] == "ok"}
    assert {(BUILTIN_DATASET, "t2vkit"), ("small-data", "t2vkit-small-plugin")} <= ok

    # Start-up (which lets every plugin add commands) survives it too.
    assert run_cli("--help", site=tmp_path).returncode == 0


def test_load_plugins_selects_by_distribution_or_entry_point_name(tmp_path: Path) -> None:
    fake_distribution(tmp_path, "t2vkit-broken-plugin", "broken", "t2vkit_broken_plugin", BROKEN)
    fake_distribution(tmp_path, "t2vkit-small-plugin", "small", "t2vkit_small_plugin", SMALL)

    # "datasets" is the entry-point name of t2vkit's built-in data sets.
    assert {(r["name"], r["status"]) for r in listing(tmp_path, load="datasets, small")} >= {
        (BUILTIN_DATASET, "ok"),
        ("small-data", "ok"),
    }
    only_small = listing(tmp_path, load="t2vkit-small-plugin")
    assert [(r["name"], r["package"]) for r in only_small] == [("small-data", "t2vkit-small-plugin")]
    assert listing(tmp_path, load="") == []


def test_two_distributions_may_use_the_same_entry_point_name(tmp_path: Path) -> None:
    fake_distribution(tmp_path, "t2vkit-small-plugin", "datasets", "t2vkit_small_plugin", SMALL)
    names = {r["name"] for r in listing(tmp_path, load="datasets")}
    assert {BUILTIN_DATASET, "small-data"} <= names


# --------------------------------------------------------------------------- start-up cost


def test_help_does_not_import_torch(tmp_path: Path) -> None:
    """Every installed plugin's register_commands hook runs here, so this guards their imports too."""
    code = (
        "import sys\n"
        "from t2vkit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "assert 'torch' not in sys.modules, 't2vkit --help imported torch'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "T2VKIT_LOAD_PLUGINS"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "plugins" in result.stdout


class AddsCommands:
    @hookimpl
    def register_commands(self, cli: Any) -> None:
        @cli.command("plugins")
        def hijack() -> None:
            """Would replace `t2vkit plugins`."""

        @cli.command("dots-hello")
        def hello() -> None:
            """A new command."""


def test_a_plugin_cannot_replace_an_existing_command(plugins, monkeypatch) -> None:
    import typer

    monkeypatch.setattr(registry, "_load_failures", [])
    monkeypatch.setattr(registry, "commands", [])
    app = typer.Typer()

    @app.command("plugins")
    def builtin() -> None:
        """The built-in."""

    plugins(AddsCommands(), "commander", "commander-pkg")
    registry.add_plugin_commands(app)

    names = [(c.name, c.callback.__name__) for c in app.registered_commands]
    assert ("plugins", "builtin") in names and ("plugins", "hijack") not in names
    assert ("dots-hello", "hello") in names
    assert [(name, origin.package) for name, origin in registry.commands if origin.package == "commander-pkg"] == [
        ("dots-hello", "commander-pkg")
    ]
    [failure] = [f for f in registry._load_failures if f.origin.package == "commander-pkg"]
    assert failure.kind == "command" and failure.error == "command 'plugins' already exists"
