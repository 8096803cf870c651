"""Diffusion sampling latency: per video and per denoising step (DDIM, CFG, MG), at a given latent
shape and the preset's denoiser size. Weights do not change the cost, so the denoiser is built
untrained; the text is random token states of the encoder's width.

    python benchmarks/diffusion_latency.py --shape 4,4,16,16 --batch 1,8 --steps 25 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from common import emit

from t2vkit import registry
from t2vkit.config import to_dict
from t2vkit.interfaces import TextEmbedding
from t2vkit.training.config import Sources, layered_tables, plugin_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="4,4,16,16", help="C,T,H,W of what is denoised")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--text-dim", type=int, default=384)
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg", type=float, default=7.5)
    parser.add_argument("--mg-alpha", type=float, default=40.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    channels, frames, height, _ = (int(x) for x in args.shape.split(","))
    factory = registry.get("sampler", "diffusion").factory
    tables, sets = layered_tables(Sources(preset=args.preset))
    config = plugin_config(factory.Model, "denoiser", "diffusion", tables, sets,
                           fixed={"channels": channels, "frames": frames, "size": height,
                                  "text_dim": args.text_dim, "latent_scale": 1.0})  # fmt: skip
    model = factory.Model(config).to(args.device).eval()
    sampler = factory(factory.Config(steps=args.steps, cfg=args.cfg, mg_alpha=args.mg_alpha), model)
    params = sum(p.numel() for p in model.parameters())
    for batch in (int(b) for b in args.batch.split(",")):
        tokens = torch.randn(batch, 12, args.text_dim, device=args.device)
        text = TextEmbedding(tokens.mean(1), tokens, torch.ones(batch, 12, dtype=torch.bool, device=args.device))
        sampler.sample(text, n=1, seed=0)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            sampler.sample(text, n=1, seed=0)
            if args.device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        result = {
            "shape": [channels, frames, height, height], "batch": batch, "steps": args.steps, "cfg": args.cfg,
            "mg_alpha": args.mg_alpha, "denoiser_params": params, "median_s_per_video_batch": round(median, 3),
            "median_s_per_step": round(median / args.steps, 4), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "repeats": args.repeats, "device": args.device,
            "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "preset": args.preset, "denoiser": to_dict(config),
        }  # fmt: skip
        emit(result, args.out)


if __name__ == "__main__":
    main()
