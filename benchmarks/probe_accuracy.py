"""The semantic probe's own accuracy: train it (default config, into a fresh cache folder, so it is
really trained) on a prepared data set's train split, then score the real clips of its test split.

    python benchmarks/probe_accuracy.py /tmp/syncdraw-full --threads 1 --out benchmarks/results/probe_syncdraw_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from t2vkit.data import PreparedDataset
from t2vkit.fsutil import atomic_write_json
from t2vkit.metrics.probe import ProbeConfig, load_or_train_probe, split_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a prepared data set folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    data = PreparedDataset(args.data)
    config = ProbeConfig()
    done = [0]

    def progress(description: str, total: int | None, advance: int) -> None:
        done[0] += advance
        if description or done[0] % 50 == 0:
            print(f"{description or 'step'} {done[0]}/{total or '?'}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        probe = load_or_train_probe(data, device=args.device, cache_dir=cache, progress=progress)
        train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    scores = split_accuracy(probe, data, args.split)
    result = {
        "benchmark": "probe_accuracy",
        "dataset": data.name,
        "fingerprint": data.meta.get("fingerprint"),
        "splits": data.meta.get("splits"),
        "split": args.split,
        "accuracy": {name: round(value, 4) for name, value in scores.items()},
        "train_seconds": round(train_seconds, 1),
        "score_seconds": round(time.perf_counter() - start, 1),
        "training": probe.info,
        "tasks": {name: len(classes) for name, classes in probe.tasks.items()},
        "parameters": sum(p.numel() for p in probe.net.parameters()),
        "config": dataclasses.asdict(config),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "command": " ".join(["python", *sys.argv]),
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
