"""Loading what a finished run directory holds, for later stages, generation and evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from t2vkit import registry
from t2vkit.checkpoint import load_component, read_config
from t2vkit.config import from_dict
from t2vkit.errors import CheckpointError


def load_decoder(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """The stage-1 video autoencoder of ``run_dir`` (in eval mode) and the run's config.

    The decoder is rebuilt from its recorded plugin name and config, then its weights are loaded
    with every tensor's name and shape checked. Building it must not draw on the run's auxiliary
    networks (discriminators), which stay unloaded.
    """
    config = read_config(run_dir)
    section = config.get("decoder")
    if not isinstance(section, dict) or "name" not in section:
        raise CheckpointError(f"{run_dir} holds no video autoencoder (its stage is {config.get('stage')!r})")
    name = section["name"]
    factory = registry.get("decoder", name).factory
    fields = {k: v for k, v in section.items() if k != "name"}
    model = factory(from_dict(factory.Config, fields, where=f"{run_dir}/config.json decoder"))
    load_component(run_dir, "decoder", model)
    return model.to(device).eval(), config
