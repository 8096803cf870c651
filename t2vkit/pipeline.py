"""Prompt → video with a trained run: the text encoder, a sampler and the decoder G, in PyTorch.

A stage-2 run directory holds everything generation needs: its config names the encoder (with
the identity of its weights), the aligner and the decoder, and the run carries both networks'
weights, so ``Pipeline.from_run(RUN_DIR)`` needs nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2vkit import registry
from t2vkit.checkpoint import load_component, read_config
from t2vkit.config import from_dict
from t2vkit.data.torch_dataset import tensor_to_clip
from t2vkit.errors import CheckpointError, T2VError
from t2vkit.prompts import check_prompts

# The sampler each kind of run is drawn with by default (a diffusion run: the one that trained its denoiser).
DEFAULT_SAMPLER = {"align": "direct", "diffusion": "diffusion"}


def run_sampling(config: dict[str, Any], factory: Any, name: str, options: dict[str, Any] | None = None) -> Any:
    """The sampler's Config: ``options`` over the run's recorded ``sampling`` defaults over the sampler's."""
    recorded = config.get("sampling") or {}
    return from_dict(factory.Config, {**recorded, **(options or {})}, where=f"sampler {name}")


def run_sampler(config: dict[str, Any], requested: str | None, run_dir: Path) -> tuple[str, Any]:
    """The sampler (name, factory) to draw from a run with: ``requested`` or the run's own; one clear
    error when the run cannot feed it."""
    stage = config.get("stage")
    if stage not in DEFAULT_SAMPLER:
        raise CheckpointError(f"{run_dir} is a stage-{stage!r} run; generation needs a stage-2 (align) run "
                              "or a diffusion run (t2vkit train --stage align ...)")  # fmt: skip
    own = DEFAULT_SAMPLER[stage]
    if stage == "diffusion":  # drawn with the sampler whose network it trained
        own = config.get("denoiser", {}).get("name", own)
    name = requested or own
    factory = registry.get("sampler", name).factory
    if factory.stage != stage or (stage == "diffusion" and name != own):
        raise T2VError(f"the {name} sampler cannot draw from {run_dir}, a {stage} run trained for the {own} "
                       f"sampler; use --sampler {own}")  # fmt: skip
    return name, factory


def _build(kind: str, section: dict[str, Any], where: str, drop: tuple[str, ...] = ()) -> Any:
    factory = registry.get(kind, section["name"]).factory
    fields = {k: v for k, v in section.items() if k != "name" and k not in drop}
    return factory(from_dict(factory.Config, fields, where=where))


class Pipeline:
    def __init__(self, encoder: Any, sampler: Any, decoder: Any, config: dict[str, Any], device: torch.device,
                 sampler_name: str) -> None:  # fmt: skip
        self.encoder, self.sampler, self.decoder = encoder, sampler, decoder
        self.config, self.device, self.sampler_name = config, device, sampler_name

    @classmethod
    def from_run(cls, run_dir: str | Path, sampler: str | None = None, device: str = "cpu",
                 options: dict[str, Any] | None = None) -> Pipeline:  # fmt: skip
        """Load a run; ``options`` are the sampler's (``steps``, ``cfg``, ... for diffusion), over the defaults
        the run records in its ``sampling`` section (e.g. the guidance scale its evaluation chose), over the
        sampler's own."""
        run_dir = Path(run_dir)
        config = read_config(run_dir)
        name, factory = run_sampler(config, sampler, run_dir)
        where = f"{run_dir}/config.json"
        encoder = _build("encoder", config["encoder"], f"{where} encoder", drop=("identity",))
        recorded = config["encoder"].get("identity")
        if recorded and encoder.identity != recorded:
            raise CheckpointError(
                f"{run_dir} was trained with text encoder weights {recorded}; the {config['encoder']['name']} "
                f"encoder here has {encoder.identity}: install the same encoder weights"
            )
        decoder = _build("decoder", config["decoder"], f"{where} decoder")
        load_component(run_dir, "decoder", decoder)
        if factory.model_section not in config:
            raise CheckpointError(f"{where} has no {factory.model_section!r} section for the {name} sampler")
        model = factory.build_model(config[factory.model_section])
        load_component(run_dir, factory.model_section, model)
        dev = torch.device(device)
        for module in (decoder, model, encoder):
            if isinstance(module, torch.nn.Module):
                module.to(dev).eval()
        sampler_config = run_sampling(config, factory, name, options)
        return cls(encoder, factory(sampler_config, model), decoder, config, dev, name)

    @torch.no_grad()
    def videos(self, prompts: Sequence[str], n: int = 1, seed: int | None = None,
               batch_size: int = 16) -> np.ndarray:  # fmt: skip
        """uint8 videos ``[len(prompts) * n, T, H, W, C]``, prompt 0's ``n`` first."""
        prompts = check_prompts(prompts)
        if n < 1:
            raise T2VError(f"--num must be at least 1, got {n}")
        if seed is not None:
            torch.manual_seed(seed)
        text = self.encoder.encode(prompts)
        latents = self.sampler.sample(text, n=n, seed=seed).to(self.device)
        chunks = [self.decoder.decode(latents[i : i + batch_size]).clamp(-1, 1)
                  for i in range(0, len(latents), batch_size)]  # fmt: skip
        return tensor_to_clip(torch.cat(chunks))
