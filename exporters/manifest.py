"""``RUN_DIR/onnx/manifest.json``: what an export holds and what it was made from.

The manifest is the contract between ``t2vkit export`` and every runtime that reads the export (ONNX
Runtime here, TensorRT later): per ONNX component its file, input/output names and shapes (symbolic
axes named), dynamic axes, opset, the file's sha256 and the sha256 of the checkpoint it was exported
from; run-level facts (stage, sampler, shapes, tokenizer settings, the batch profile) so a runtime needs
neither the run's config nor torch. :func:`load_manifest` refuses an export whose files changed after
export, or whose run was retrained since, naming the component and the command that fixes it.

Torch-free (json + hashlib): the ONNX runtime of the direct sampler imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2vkit import __version__
from t2vkit.checkpoint import component_path, read_config
from t2vkit.errors import CheckpointError, T2VError
from t2vkit.fsutil import atomic_write_json, read_json, sha256_file

FORMAT = "t2vkit-onnx"
FORMAT_VERSION = 1
EXPORT_DIR = "onnx"
MANIFEST_NAME = "manifest.json"


def export_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / EXPORT_DIR


def export_command(run_dir: str | Path) -> str:
    return f"t2vkit export {run_dir}"


def checkpoint_source(run_dir: str | Path, name: str) -> dict[str, str]:
    """The source record of a component exported from ``RUN_DIR/NAME.safetensors``."""
    path = component_path(run_dir, name)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the run is incomplete")
    return {"file": path.name, "sha256": sha256_file(path)}


def encoder_source(identity: str) -> dict[str, str]:
    """The source record of the text encoder: its identity names the weights (see HFTextEncoder)."""
    return {"identity": identity}


@dataclass(frozen=True)
class Manifest:
    """A loaded (and, by :func:`load_manifest`, verified) manifest of ``run_dir``'s export."""

    run_dir: Path
    data: dict[str, Any]

    @property
    def folder(self) -> Path:
        return export_dir(self.run_dir)

    @property
    def stage(self) -> str:
        return self.data["run"]["stage"]

    @property
    def sampler(self) -> str:
        return self.data["run"]["sampler"]

    @property
    def components(self) -> dict[str, dict[str, Any]]:
        return self.data["components"]

    @property
    def assets(self) -> dict[str, dict[str, Any]]:
        return self.data["assets"]

    @property
    def text_encoder(self) -> dict[str, Any]:
        return self.data["text_encoder"]

    def check_sampling(self, sampler: str | None, options: Mapping[str, Any] | None) -> None:
        """Refuse a sampler the export was not made for, and options the direct sampler does not take."""
        if sampler is not None and sampler != self.sampler:
            raise T2VError(f"the export of {self.run_dir} draws with the {self.sampler} sampler; use "
                           f"--sampler {self.sampler}, or --backend torch for the {sampler} sampler")  # fmt: skip
        if self.sampler == "direct" and options:
            raise T2VError(f"the direct sampler takes no options, got {', '.join(options)}")

    def path(self, name: str) -> Path:
        """The file of a component or an asset (``tokenizer``, ``null_text``)."""
        entry = self.components.get(name) or self.assets.get(name)
        if entry is None:
            raise CheckpointError(f"{self.folder / MANIFEST_NAME} lists no {name!r}; re-run "
                                  f"`{export_command(self.run_dir)} --force`")  # fmt: skip
        return self.folder / entry["file"]


def new_manifest(run: Mapping[str, Any], text_encoder: Mapping[str, Any], opset: int,
                 batch_profile: tuple[int, int, int], tolerance: float,
                 checked_batches: tuple[int, ...]) -> dict[str, Any]:  # fmt: skip
    """The run-level part; components and assets are added as they are exported."""
    low, opt, high = batch_profile
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "t2vkit_version": __version__,
        "run": dict(run),
        "opset": opset,
        "batch_profile": {"min": low, "opt": opt, "max": high},
        "tolerance": tolerance,
        "checked_batches": list(checked_batches),
        "text_encoder": dict(text_encoder),
        "components": {},
        "assets": {},
    }


def write_manifest(folder: Path, data: Mapping[str, Any]) -> Path:
    path = folder / MANIFEST_NAME
    atomic_write_json(path, data)
    return path


def load_manifest(run_dir: str | Path, verify: bool = True) -> Manifest:
    """Read ``RUN_DIR/onnx/manifest.json``; with ``verify``, check every file's sha256 and that the run's
    checkpoints (and text encoder identity) are still the ones the export was made from."""
    run_dir = Path(run_dir)
    path = export_dir(run_dir) / MANIFEST_NAME
    if not path.is_file():
        if not run_dir.is_dir():
            raise CheckpointError(f"run directory not found: {run_dir}")
        raise T2VError(f"{run_dir} has no ONNX export ({path} not found); run `{export_command(run_dir)}` first")
    data = read_json(path, CheckpointError, f"; re-run `{export_command(run_dir)} --force`")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a t2vkit ONNX manifest; re-run `{export_command(run_dir)} --force`")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {version}; this t2vkit ({__version__}) reads up to "
                              f"{FORMAT_VERSION}: upgrade t2vkit, or re-run `{export_command(run_dir)} --force`")
    manifest = Manifest(run_dir, data)
    if verify:
        verify_files(manifest)
        verify_sources(manifest)
    return manifest


def _entries(manifest: Manifest) -> list[tuple[str, dict[str, Any]]]:
    return [*manifest.components.items(), *manifest.assets.items()]


def verify_files(manifest: Manifest) -> None:
    """Every exported file exists and has the sha256 the manifest recorded."""
    fix = f"re-run `{export_command(manifest.run_dir)}`"
    for name, entry in _entries(manifest):
        path = manifest.folder / entry["file"]
        if not path.is_file():
            raise CheckpointError(f"the {name} file {path} is missing; {fix}")
        if sha256_file(path) != entry["sha256"]:
            raise CheckpointError(f"the {name} file {path} does not match the sha256 in its manifest (changed or "
                                  f"corrupted after export); {fix}")  # fmt: skip
        for extra in entry.get("external_data", []):
            data_path = manifest.folder / extra["file"]
            if not data_path.is_file() or sha256_file(data_path) != extra["sha256"]:
                raise CheckpointError(f"the {name} weights {data_path} are missing or changed after export; {fix}")


def verify_sources(manifest: Manifest) -> None:
    """The run still holds the checkpoints (and the text encoder) each file was exported from."""
    run_dir = manifest.run_dir
    fix = f"re-run `{export_command(run_dir)}`"
    hashes: dict[str, str] = {}  # one read per checkpoint, however many entries it is the source of
    for name, entry in _entries(manifest):
        source = entry.get("source", {})
        if "identity" in source:
            recorded = read_config(run_dir).get("encoder", {}).get("identity")
            if recorded is not None and source["identity"] != recorded:
                raise CheckpointError(f"the {name} was exported from text encoder {source['identity']}, but "
                                      f"{run_dir} now uses {recorded} (retrained after export); {fix}")  # fmt: skip
            continue
        path = run_dir / source["file"]
        if not path.is_file():
            raise CheckpointError(f"{path}, the checkpoint the {name} was exported from, is missing")
        if source["file"] not in hashes:
            hashes[source["file"]] = sha256_file(path)
        if hashes[source["file"]] != source["sha256"]:
            raise CheckpointError(f"the {name} was exported from another {source['file']} than {run_dir} holds now "
                                  f"(the run was retrained after export); {fix}")  # fmt: skip
