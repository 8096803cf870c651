"""Run directories: ``config.json`` (with a format version) and one ``.safetensors`` per component.

Every file is written under a temporary name and renamed. Loading never unpickles anything and
checks each tensor's name and shape against the module it goes into, naming the one that is off.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2vkit import __version__
from t2vkit.errors import CheckpointError
from t2vkit.fsutil import atomic_path, atomic_write_json, read_json

if TYPE_CHECKING:
    import torch

RUN_FORMAT = "t2vkit-run"
RUN_FORMAT_VERSION = 1
CONFIG_NAME = "config.json"


def write_config(run_dir: str | Path, config: Mapping[str, Any]) -> Path:
    """Write the resolved config of a run, stamped with the format and t2vkit versions."""
    path = Path(run_dir) / CONFIG_NAME
    stamped = {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, "t2vkit_version": __version__}
    atomic_write_json(path, {**stamped, **{k: v for k, v in config.items() if k not in stamped}})
    return path


def read_config(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_NAME
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory not found: {run_dir}")
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a t2vkit run directory (no {CONFIG_NAME})")
    config = read_json(path, CheckpointError)
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{path} is not a t2vkit run config")
    version = config.get("format_version")
    if not isinstance(version, int) or version > RUN_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has run format version {version}; this t2vkit ({__version__}) reads up to "
            f"{RUN_FORMAT_VERSION}: upgrade t2vkit"
        )
    return config


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save a flat name → tensor mapping as safetensors, atomically."""
    from safetensors.torch import save_file

    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=metadata)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None


def component_path(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / f"{name}.safetensors"


def save_component(run_dir: str | Path, name: str, module: torch.nn.Module) -> Path:
    """Save ``module``'s state dict as ``RUN_DIR/NAME.safetensors``."""
    path = component_path(run_dir, name)
    save_tensors(path, module.state_dict(), metadata={"component": name, "t2vkit_version": __version__})
    return path


def load_component(run_dir: str | Path, name: str, module: torch.nn.Module) -> torch.nn.Module:
    """Load ``RUN_DIR/NAME.safetensors`` into ``module``, checking every name and shape."""
    path = component_path(run_dir, name)
    state = load_tensors(path)
    check_state(state, module.state_dict(), where=str(path))
    module.load_state_dict(state, strict=True)
    return module


def check_state(found: Mapping[str, Any], expected: Mapping[str, Any], where: str) -> None:
    """Raise a CheckpointError naming the first missing, unexpected or mis-shaped tensor."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{where}: tensor {missing[0]!r} is missing{more}; was it saved by another model?")
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{where}: unexpected tensor {unexpected[0]!r}{more}; was it saved by another model?")
    for key, tensor in expected.items():
        if tuple(found[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{where}: tensor {key!r} has shape {tuple(found[key].shape)}, "
                f"the model expects {tuple(tensor.shape)}"
            )
