"""MNIST's IDX files: finding, checking, reading and (on request) downloading them."""

from __future__ import annotations

import gzip
import os
import struct
import urllib.request
from pathlib import Path

import numpy as np

from t2vkit.errors import DataError
from t2vkit.fsutil import atomic_path, sha256_file

# The canonical gzip files (sha256 of the .gz), as published and as mirrored by torchvision.
FILES = {
    "train-images": ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels": ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "test-images": ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "test-labels": ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

HOW_TO = "pass --mnist DIR or set T2VKIT_MNIST to a folder with the four MNIST IDX files (or --option download=true)"


def locate(folder: Path, key: str) -> Path:
    """The file for ``key`` in ``folder``, gzipped or not, under its usual names."""
    gz_name = FILES[key][0]
    raw = gz_name.removesuffix(".gz")
    for name in (gz_name, raw, raw.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"MNIST file {gz_name} not found in {folder}; {HOW_TO}")


def default_folder() -> Path | None:
    value = os.environ.get("T2VKIT_MNIST")
    return Path(value) if value else None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read an IDX file (gzipped or not), checking its magic number and its length."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} is corrupt or truncated: {exc}") from None
    if len(data) < 8:
        raise DataError(f"{path} is truncated ({len(data)} bytes)")
    found = struct.unpack(">i", data[:4])[0]
    if found != magic:
        raise DataError(f"{path} is not an MNIST IDX file of the expected kind (magic {found}, expected {magic})")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}i", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise DataError(f"{path} is truncated: {len(data) - header} data bytes, the header announces {expected}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def load(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 28, 28]`` and labels ``[N]`` of ``part`` ("train" or "test")."""
    images = read_idx(locate(folder, f"{part}-images"), IMAGES_MAGIC)
    labels = read_idx(locate(folder, f"{part}-labels"), LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"MNIST {part}: {len(images)} images but {len(labels)} labels")
    return images, labels


def download(folder: Path) -> None:
    """Fetch the four gzip files from the mirror and verify their published sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, sha in FILES.values():
        target = folder / name
        if target.is_file() and sha256_file(target) == sha:
            continue
        with atomic_path(target) as tmp:
            try:
                urllib.request.urlretrieve(MIRROR + name, tmp)
            except OSError as exc:
                raise DataError(f"cannot download {MIRROR + name}: {exc}; {HOW_TO}") from None
            if sha256_file(tmp) != sha:
                raise DataError(f"{name} from {MIRROR} does not match its published checksum")
