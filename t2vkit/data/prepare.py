"""``t2vkit data prepare``: run a dataset plugin into a staged folder, then move it into place.

A prepared folder is identified by a fingerprint of the builder, its version, its options and the
checksums of its raw sources; preparing the same thing again is a no-op, preparing something else
into the same ``--out`` is refused unless ``overwrite`` is given.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2vkit import __version__, registry
from t2vkit.config import from_dict, to_dict
from t2vkit.data.store import DATASET_FORMAT, ClipWriter
from t2vkit.errors import ConfigError, DataError
from t2vkit.fsutil import check_writable_dir, sha256_file, staged_directory


@dataclass
class PrepareResult:
    root: Path
    meta: dict[str, Any]
    seconds: float
    bytes: int
    reused: bool  # True when --out already held this exact data set


def option_names(name: str) -> list[str]:
    """The options dataset ``name`` takes (its Config fields)."""
    factory = registry.get("dataset", name).factory
    return [f.name for f in dataclasses.fields(factory.Config)]


def build_config(name: str, options: dict[str, Any]) -> Any:
    factory = registry.get("dataset", name).factory
    known = set(option_names(name))
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"dataset {name} has no option {', '.join(unknown)} (its options: "
                          f"{', '.join(sorted(known)) or 'none'}; any of them can be given as -o key=value)")
    return from_dict(factory.Config, options, where=f"dataset {name}")


def source_checksum(path: Path) -> dict[str, Any]:
    """A file's sha256, or for a folder of videos a digest of its listing (names and sizes)."""
    if path.is_file():
        return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    if path.is_dir():
        listing = sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file())
        digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
        return {"path": str(path), "files": len(listing), "listing_sha256": digest}
    raise DataError(f"source not found: {path}")


def fingerprint(name: str, version: str, config: Any, sources: dict[str, dict[str, Any]]) -> str:
    """Identity of a prepared data set. Paths are left out: the source checksums cover content."""
    options = {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)
               if not isinstance(getattr(config, f.name), Path)}  # fmt: skip
    content = {k: {kk: vv for kk, vv in v.items() if kk != "path"} for k, v in sources.items()}
    blob = json.dumps({"dataset": name, "version": version, "options": options, "sources": content}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def prepare(
    name: str,
    out: str | Path,
    options: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: Callable[[str, int | None, int], None] | None = None,
) -> PrepareResult:
    """Prepare data set ``name`` into ``out`` with the builder's ``options``."""
    out = Path(out)
    entry = registry.get("dataset", name)
    config = build_config(name, options or {})
    builder = entry.factory(config)
    check_writable_dir(out.parent)

    sources = {key: source_checksum(Path(path)) for key, path in builder.sources().items()}
    digest = fingerprint(name, builder.version, config, sources)

    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        existing = _existing_fingerprint(out)
        if existing == digest:
            meta = json.loads((out / "meta.json").read_text())
            return PrepareResult(out, meta, 0.0, _folder_bytes(out), reused=True)
        if not overwrite:
            what = "a different prepared data set" if existing else "other files"
            raise DataError(f"{out} already holds {what}; pass --overwrite to replace it")

    start = time.perf_counter()
    with staged_directory(out) as stage:
        writer = ClipWriter(stage, progress)
        builder.build(writer)
        meta = writer.finish({
            "dataset": name,
            "generator": f"{entry.origin.package} {entry.origin.version}".strip(),
            "generator_version": builder.version,
            "t2vkit_version": __version__,
            "options": to_dict(config),
            "sources": sources,
            "fingerprint": digest,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })  # fmt: skip
    return PrepareResult(out, meta, time.perf_counter() - start, _folder_bytes(out), reused=False)


def _existing_fingerprint(out: Path) -> str | None:
    meta_path = out / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return meta.get("fingerprint") if meta.get("format") == DATASET_FORMAT else None


def _folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
