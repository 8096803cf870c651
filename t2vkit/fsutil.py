"""Atomic file writes: everything t2vkit writes goes to a temporary name first, then is renamed,
so a crash or a bad input never leaves a half-written checkpoint, data set or video behind."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Temporary files are created 0600; finished files get the permissions a plain open() would give.
_FILE_MODE = 0o666 & ~_current_umask()
_DIR_MODE = 0o777 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)  # here, not at creation: some writers replace the file they are given
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path, error: type[Exception], advice: str = "") -> Any:
    """Parse one of t2vkit's own JSON files; one that is not valid UTF-8 JSON raises ``error`` naming the file,
    the parser's complaint and ``advice`` (e.g. ``"; re-run `t2vkit export RUN --force`"``)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is corrupt ({exc}){advice}") from None


@contextlib.contextmanager
def staged_directory(final: str | Path) -> Iterator[Path]:
    """Yield an empty directory beside ``final``; on success it takes ``final``'s place.

    An existing ``final`` is replaced only once the new one is complete (the caller decides
    whether replacing is allowed). On error the staging directory is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(stage, _DIR_MODE)
    try:
        yield stage
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, trash / "old")
            os.replace(stage, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(stage, final)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and make sure files can be written there (fail before any work)."""
    from t2vkit.errors import T2VError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".t2vkit-write-test."):
            pass
    except OSError as exc:
        raise T2VError(f"cannot write to {path}: {exc.strerror or exc}") from None
    return path


def check_can_create(path: str | Path) -> Path:
    """Fail early, without creating anything, if ``path`` cannot become (or is not) a writable folder."""
    from t2vkit.errors import T2VError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise T2VError(f"{path} exists and is not a folder")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise T2VError(f"cannot create {path}: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise T2VError(f"cannot write to {path}: {ancestor} is not writable")
    return path


def cache_root() -> Path:
    """Where t2vkit keeps caches (text embeddings, probes): $T2VKIT_CACHE or ~/.cache/t2vkit."""
    return Path(os.environ.get("T2VKIT_CACHE") or Path.home() / ".cache" / "t2vkit")
