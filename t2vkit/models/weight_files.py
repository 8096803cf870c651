"""Third-party weight files the user names (ImageNet backbones, LPIPS heads, DISTS' α/β): where they
are (an argument, else an environment variable) and how to read them without running pickled code.

A file is read as safetensors when it is one; anything else goes through
``torch.load(weights_only=True)``, which accepts only tensors and plain containers. That covers
torchvision's ``.pth`` checkpoints, the ``lpips`` package's heads and DISTS' ``weights.pt``.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from t2vkit.errors import CheckpointError


@dataclass(frozen=True)
class WeightFile:
    """One weight file a metric needs: what it is, how a user names it, and where to get it."""

    what: str  # "AlexNet weights"
    flag: str  # the command-line option, "--lpips-backbone"
    env: str  # the environment variable, "T2VKIT_LPIPS_BACKBONE"
    source: str  # where to get it, shown in every error

    def resolve(self, given: str | Path | None = None) -> tuple[Path | None, str]:
        """The file named by ``given``, else by the environment variable; ``(None, why)`` when neither
        names an existing file (``why`` is one line for a report's "skipped" column)."""
        if given:
            path, origin = Path(given), ""
        elif os.environ.get(self.env):
            path, origin = Path(os.environ[self.env]), f" (from {self.env})"
        else:
            return None, f"no {self.what}: pass {self.flag} or set {self.env}"
        if not path.is_file():
            return None, f"{self.what} not found: {path}{origin}"
        return path, ""

    def read(self, path: str | Path) -> dict[str, torch.Tensor]:
        """All tensors of the file, as float32 on the CPU; any failure is one ``CheckpointError`` line."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{self.what} not found: {path}; get {self.source}, then pass {self.flag} PATH "
                                  f"or set {self.env}")  # fmt: skip
        try:
            if _is_safetensors(path):
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        except Exception as exc:  # a third-party file can fail in many ways; all mean "not this file"
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(f"{path} is not a readable weight file for the {self.what} ({reason}); "
                                  f"expected {self.source}") from None  # fmt: skip
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path} does not hold a flat dict of tensors; expected {self.source}")
        return {str(k): v.float() for k, v in state.items()}

    def tensor(self, state: Mapping[str, torch.Tensor], key: str, shape: tuple[int, ...], path: Path) -> torch.Tensor:
        """``state[key]``, checked against ``shape``: a missing or mis-shaped tensor is one error naming its key."""
        if key not in state:
            raise CheckpointError(f"{path}: tensor {key!r} is missing; expected {self.source}")
        value = state[key]
        if tuple(value.shape) != shape:
            raise CheckpointError(f"{path}: tensor {key!r} has shape {tuple(value.shape)}, the {self.what} need "
                                  f"{shape}; expected {self.source}")  # fmt: skip
        return value


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with the little-endian length of its JSON header, then ``{``."""
    with path.open("rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    (size,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and size < path.stat().st_size


def resolve_pair(first: WeightFile, first_given: str | Path | None, second: WeightFile,
                 second_given: str | Path | None) -> tuple[tuple[Path, Path] | None, str]:  # fmt: skip
    """Both files a metric needs (a backbone and its learned part), or ``(None, why)`` for the first one missing."""
    a, why = first.resolve(first_given)
    if a is None:
        return None, why
    b, why = second.resolve(second_given)
    if b is None:
        return None, why
    return (a, b), ""
