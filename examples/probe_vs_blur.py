"""How sharp must a video be for the semantic probe to read it? Blur real clips, score them.

    python examples/probe_vs_blur.py data/syncdraw --split val --clips 512

Each row blurs the split's first clips with a Gaussian of standard deviation σ pixels (per frame, in
H and W) and prints their PSNR and SSIM against the originals beside the probe's faithfulness on
them. It calibrates the two kinds of figure `t2vkit evaluate` prints: a stage-1 autoencoder (or a
generator) whose reconstructions score a given PSNR is at best about as readable as the blur that
scores the same, so the table says which PSNR a model needs before the probe can find the digit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from scipy.ndimage import gaussian_filter

from t2vkit.data.store import PreparedDataset
from t2vkit.data.torch_dataset import clip_to_tensor
from t2vkit.errors import T2VError
from t2vkit.metrics.probe import ALL, load_or_train_probe
from t2vkit.metrics.quality import psnr, ssim

SIGMAS = (0.0, 0.5, 0.7, 1.0, 1.5, 2.0, 2.5, 3.0)


def blurred(video: torch.Tensor, sigma: float) -> torch.Tensor:
    """Videos ``[B, C, T, H, W]`` blurred in H and W only (σ = 0: the videos themselves)."""
    if sigma == 0:
        return video
    return torch.from_numpy(gaussian_filter(video.numpy(), sigma=(0, 0, 0, sigma, sigma), mode="nearest"))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="a prepared data set (t2vkit data prepare)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--clips", type=int, default=512, help="how many of the split's clips (default 512)")
    args = parser.parse_args(argv)
    try:
        data = PreparedDataset(args.dataset)
        indices = data.indices(args.split)[: args.clips]
        if len(indices) == 0:
            raise T2VError(f"{args.dataset} has no {args.split} clips")
        probe = load_or_train_probe(data)
    except T2VError as exc:
        raise SystemExit(f"error: {exc}") from None

    real = torch.stack([clip_to_tensor(data.clips[i]) for i in indices])  # [B, C, T, H, W] in [-1, 1]
    buckets = [data.records[i].bucket for i in indices]
    tasks = list(probe.tasks)
    print(f"{len(indices)} {args.split} clips of {args.dataset}")
    print("| σ (px) | PSNR | SSIM | " + " | ".join(f"probe {t}" for t in [ALL, *tasks]) + " |")
    print("| --- " * (3 + 1 + len(tasks)) + "|")
    for sigma in SIGMAS:
        video = blurred(real, sigma)
        shares = probe.accuracy(video, buckets)  # the probe batches the videos itself
        quality = "inf" if sigma == 0 else f"{psnr(video, real).mean():.2f}"
        print(f"| {sigma:g} | {quality} | {ssim(video, real).mean():.3f} | "
              + " | ".join(f"{shares[t]:.1%}" for t in [ALL, *tasks]) + " |")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
