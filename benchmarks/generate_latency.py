"""Generation latency with the PyTorch pipeline: prompt → uint8 frames, model already loaded.

    python benchmarks/generate_latency.py runs/progressive --batch 1,16 --repeats 20 --out benchmarks/results/x.jsonl
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from common import emit

from t2vkit.pipeline import Pipeline

PROMPTS = [f"digit {d} is moving {m}" for d in range(10) for m in ("up and down", "left and right")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--batch", default="1,16")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, help="diffusion runs: DDIM steps")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    options = {"steps": args.steps} if args.steps else {}
    began = time.perf_counter()
    pipeline = Pipeline.from_run(args.run, device=args.device, options=options)
    load_seconds = time.perf_counter() - began
    for batch in (int(b) for b in args.batch.split(",")):
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
        pipeline.videos(prompts, seed=0)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            pipeline.videos(prompts, seed=0)
            times.append(time.perf_counter() - start)
        result = {
            "run": str(args.run), "stage": pipeline.config["stage"], "batch": batch, "repeats": args.repeats,
            "median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4), "videos_per_s": round(batch / statistics.median(times), 2),
            "load_s": round(load_seconds, 2), "device": args.device, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
        }  # fmt: skip
        emit(result, args.out)


if __name__ == "__main__":
    main()
