"""Training checkpoints: module weights, optimizer states and progress, without pickle.

::

    RUN/checkpoints/{last,best}/
        NAME.safetensors              each module's state dict
        optimizer.NAME.safetensors    each optimizer's tensors (Adam's moments, step counts)
        state.json                    step, best metric, optimizers' hyperparameters and layout

A checkpoint folder is staged and renamed as a whole, so an interrupted save leaves the previous
one intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from t2vkit.checkpoint import check_state, load_tensors, save_tensors
from t2vkit.errors import CheckpointError
from t2vkit.fsutil import atomic_write_json, read_json, staged_directory

STATE = "state.json"


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state dict into tensors (for safetensors) and JSON-able values."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = tensor
    for pid, values in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(folder: Path, modules: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer], progress: dict[str, Any]) -> None:  # fmt: skip
    with staged_directory(folder) as stage:
        for name, module in modules.items():
            save_tensors(stage / f"{name}.safetensors", module.state_dict())
        layouts = {}
        for name, optimizer in optimizers.items():
            tensors, meta = optimizer_to_files(optimizer)
            save_tensors(stage / f"optimizer.{name}.safetensors", tensors)
            layouts[name] = meta
        atomic_write_json(stage / STATE, {**progress, "optimizers": layouts})


def read_progress(folder: Path) -> dict[str, Any]:
    """The progress record of a checkpoint folder (step, total steps, best validation, optimizer layouts)."""
    path = folder / STATE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from in {folder.parent.parent} ({path} is missing)")
    return read_json(path, CheckpointError)


def load_checkpoint(folder: Path, modules: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:  # fmt: skip
    """Restore modules and optimizers in place; return the progress record."""
    progress = read_progress(folder)
    for name, module in modules.items():
        state = load_tensors(folder / f"{name}.safetensors")
        check_state(state, module.state_dict(), where=str(folder / f"{name}.safetensors"))
        module.load_state_dict(state)
    for name, optimizer in optimizers.items():
        tensors = load_tensors(folder / f"optimizer.{name}.safetensors")  # load_state_dict moves them
        layout = progress.get("optimizers", {}).get(name)
        if layout is None:
            raise CheckpointError(f"{folder / STATE} has no state for optimizer {name!r}")
        optimizer.load_state_dict(optimizer_from_files(tensors, layout))
    return progress
