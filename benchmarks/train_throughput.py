"""Stage-1 training throughput (clips/s) of each decoder, through the engine's own step.

Measures full training steps (both discriminator and autoencoder updates, all loss terms) on random
clips of the chosen shape, after warm-up, so data loading is left out: the engine's loader reads
memory-mapped uint8 clips and is not the bottleneck. Writes one JSON line per decoder.

    python benchmarks/train_throughput.py --preset paper --batch 8 --steps 5 --out benchmarks/results/x.jsonl
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from common import emit

from t2vkit import registry
from t2vkit.config import to_dict
from t2vkit.training.config import Sources, layered_tables, plugin_config, stage_train_config
from t2vkit.training.engine import Update
from t2vkit.training.video import VideoTask


def measure(decoder: str, preset: str, batch: int, steps: int, warmup: int, shape: tuple[int, int, int, int],
            device: torch.device) -> dict:  # fmt: skip
    channels, frames, size, _ = shape
    tables, sets = layered_tables(Sources(preset=preset))
    train_cfg = stage_train_config(tables, sets, "video")
    factory = registry.get("decoder", decoder).factory
    config = plugin_config(factory, "decoder", decoder, tables, sets,
                           fixed={"channels": channels, "frames": frames, "size": size})  # fmt: skip
    torch.manual_seed(0)
    model = factory(config)
    task = VideoTask(model, model.objective())
    for module in task.modules.values():
        module.to(device).train()
    params = {n: [p for m in mods for p in m.parameters()] for n, mods in task.optimized().items()}
    optimizers = {n: torch.optim.Adam(p, lr=train_cfg.lr, betas=train_cfg.betas) for n, p in params.items()}
    update = Update(optimizers, params, train_cfg.grad_clip, world=1)
    video = torch.rand(batch, channels, frames, size, size, device=device) * 2 - 1

    def step() -> None:
        task.train_step({"video": video}, update)
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - began) / steps
    return {
        "decoder": decoder, "preset": preset, "batch": batch, "clip": [frames, size, size, channels],
        "params_decoder": sum(p.numel() for p in model.parameters()),
        "params_auxiliary": sum(p.numel() for m in task.auxiliaries.values() for p in m.parameters()),
        "seconds_per_step": round(seconds, 3), "clips_per_second": round(batch / seconds, 2),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "config": to_dict(config),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoders", default="wae3d,vae,unetldm")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    for decoder in args.decoders.split(","):
        result = measure(decoder, args.preset, args.batch, args.steps, args.warmup,
                         (args.channels, args.frames, args.size, args.size), device)  # fmt: skip
        emit(result, args.out)


if __name__ == "__main__":
    main()
