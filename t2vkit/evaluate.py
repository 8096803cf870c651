"""``t2vkit evaluate``: the paper's metrics for a run on a split of a prepared data set.

- A stage-1 run (video autoencoder), Table 1: reconstruction PSNR, SSIM, LPIPS, DISTS (mean ± std
  over videos), FVD and KVD between reconstructions and their originals.
- A text-to-video run, Table 2: bucket metrics: every caption of the split generates
  ``num_per_prompt`` videos; each is scored against every clip of its bucket in the split, best
  match kept; means are over generated videos, weighted by how often their caption occurs. FVD/KVD
  compare real clips with one generated video for each of their captions.
- Beyond the paper: the semantic probe (``t2vkit.metrics.probe``) says which share of the videos
  shows what its caption says, beside its own accuracy on the real clips; and with K ≥ 2 videos per
  prompt, their diversity against K real clips of the bucket, in a stage-1 encoder's latent space.
- Beside every report, trivial references (``t2vkit.metrics.references``) that show the floor.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2vkit.checkpoint import read_config
from t2vkit.data.store import PreparedDataset
from t2vkit.data.torch_dataset import clip_to_tensor, tensor_to_clip
from t2vkit.errors import DataError, T2VError
from t2vkit.metrics.bucket import best_matches, weighted_summary
from t2vkit.metrics.quality import psnr, ssim
from t2vkit.metrics.references import bucket_median_reference, bucket_members, split_median_reference
from t2vkit.metrics.suite import FAMILIES, MetricSuite, WeightPaths, build_suite, distribution_scores, skipped_columns
from t2vkit.report import Report, markdown

__all__ = ["EvalOptions", "Report", "evaluate", "evaluate_runs", "markdown"]


@dataclass
class EvalOptions:
    split: str = "test"
    num_per_prompt: int = 1
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 32
    latent_run: str | Path | None = None  # the stage-1 run embedding videos for diversity
    fvd_videos: int = 512  # videos per set for FVD/KVD (400-d features need more than 400)
    weights: WeightPaths = field(default_factory=WeightPaths)
    skip: frozenset[str] = frozenset()  # metric families not to compute (t2vkit.metrics.suite.FAMILIES)
    probe_config: Any = None  # a t2vkit.metrics.probe.ProbeConfig; None: its defaults
    sampling: dict[str, Any] = field(default_factory=dict)  # diffusion runs' sampler options (steps, cfg, ...)
    progress: Callable[[str, int | None, int], None] | None = None  # (description, total, advance) reports


def evaluate(run_dir: str | Path, dataset: str | Path, options: EvalOptions | None = None, **overrides: Any) -> Report:
    """Evaluate ``run_dir`` on ``dataset``; keyword ``overrides`` replace fields of ``options``."""
    return evaluate_runs([run_dir], dataset, options, **overrides)[0]


def evaluate_runs(run_dirs: Sequence[str | Path], dataset: str | Path, options: EvalOptions | None = None,
                  **overrides: Any) -> list[Report]:  # fmt: skip
    """One report per run, for one table: every run is checked before any is scored, and the metric
    networks (probe, I3D, LPIPS, DISTS) are loaded once for all of them."""
    options = replace(options or EvalOptions(), **overrides)
    unknown = set(options.skip) - set(FAMILIES)
    if unknown:
        raise T2VError(f"--skip takes {', '.join(FAMILIES)}; got {', '.join(sorted(unknown))}")
    if options.num_per_prompt < 1 or options.fvd_videos < 2:
        raise T2VError("--num-per-prompt must be at least 1 and --fvd-videos at least 2")
    data = PreparedDataset(dataset)
    indices = data.indices(options.split)
    if len(indices) == 0:
        raise DataError(f"{data.root} has no {options.split} clips")
    configs = {}
    for run_dir in map(Path, run_dirs):
        configs[run_dir] = config = read_config(run_dir)
        _check_dataset(config, data, run_dir)
        if config.get("stage") not in ("video", "align", "diffusion"):
            raise T2VError(f"{run_dir} is a {config.get('stage')!r} run; evaluate takes stage-1 (video) and "
                           "text-to-video runs")  # fmt: skip
    options.progress = options.progress or (lambda description, total, advance: None)
    suite = build_suite(options.weights, data, options.device, set(options.skip), options.probe_config,
                        options.progress)  # fmt: skip
    shared = _shared(data, indices, {config["stage"] for config in configs.values()}, options, suite)
    return [_evaluate_one(run, config, data, indices, options, suite, shared) for run, config in configs.items()]


@dataclass
class _Shared:
    """What every run's report on one split has in common, computed once per call."""

    references: dict[str, dict[str, float]]  # kind → the metrics of a trivial answer, or FVD/KVD's floor
    probe_real: dict[str, float] | None = None  # the probe's accuracy on the split's real clips
    fvd_sample: np.ndarray | None = None  # the real clips FVD/KVD compare with (indices, in file order)
    real_features: np.ndarray | None = None  # their I3D features


def _shared(data: PreparedDataset, indices: np.ndarray, stages: set[str], options: EvalOptions,
            suite: MetricSuite) -> _Shared:  # fmt: skip
    shared = _Shared(references={})
    if "video" in stages:
        shared.references["split_median"] = split_median_reference(data, indices, options.batch_size)
    if stages - {"video"}:
        shared.references["bucket_median"] = bucket_median_reference(data, indices)
    if suite.probe is not None:
        from t2vkit.metrics.probe import split_accuracy

        shared.probe_real = split_accuracy(suite.probe, data, options.split)
    if suite.i3d is not None:
        shared.fvd_sample = _fvd_sample(indices, options)
        shared.real_features = _real_features(suite, data, shared.fvd_sample, options)
        # FVD/KVD's floor: the same distances to as many real clips of another split (sampling noise alone)
        other = "val" if options.split != "val" else "train"
        others = _fvd_sample(data.indices(other), replace(options, fvd_videos=len(shared.fvd_sample)))
        if len(others) >= 2:
            floor, _ = distribution_scores(shared.real_features, _real_features(suite, data, others, options))
            shared.references[f"real_{other}"] = {name: value["mean"] for name, value in floor.items()}
    return shared


def _evaluate_one(run_dir: Path, config: dict[str, Any], data: PreparedDataset, indices: np.ndarray,
                  options: EvalOptions, suite: MetricSuite, shared: _Shared) -> Report:  # fmt: skip
    stage = config["stage"]
    report = Report(str(run_dir), str(stage), data.name, options.split, len(indices),
                    settings={"num_per_prompt": options.num_per_prompt, "seed": options.seed,
                              "fvd_videos": options.fvd_videos, **suite.settings})  # fmt: skip
    if shared.probe_real is not None:
        from t2vkit.metrics.probe import ALL

        report.probe["real"] = shared.probe_real
        report.metrics["probe_real"] = {"mean": shared.probe_real[ALL]}
    trivial = "split_median" if stage == "video" else "bucket_median"
    report.references = {name: values for name, values in shared.references.items()
                         if name == trivial or name.startswith("real_")}  # fmt: skip
    if stage == "video":
        report.skipped = skipped_columns(suite.skipped, "video")
        _reconstruction(run_dir, data, indices, options, suite, shared, report)
    else:
        encoder, why = _latent_encoder(config, options)
        report.skipped = skipped_columns(suite.skipped | ({"diversity": why} if why else {}), "text")
        _text_to_video(run_dir, data, indices, options, suite, shared, encoder, report)
    return report


def _check_dataset(config: dict[str, Any], data: PreparedDataset, run_dir: Path) -> None:
    recorded = config.get("dataset", {})
    if list(recorded.get("clip_shape", [])) != list(data.clip_shape):
        raise DataError(f"{data.root} has clips of shape {list(data.clip_shape)} (T, H, W, C); {run_dir} was "
                        f"trained on {recorded.get('clip_shape')}")  # fmt: skip


def _summary(values: torch.Tensor, weights: torch.Tensor | None = None) -> dict[str, float]:
    mean, std = weighted_summary(values, torch.ones_like(values) if weights is None else weights)
    return {"mean": mean, "std": std}


def _fvd_sample(indices: np.ndarray, options: EvalOptions) -> np.ndarray:
    """The clips FVD/KVD use: ``fvd_videos`` of the split, drawn with the seed, in file order."""
    rng = np.random.default_rng(options.seed)
    return np.sort(rng.permutation(indices)[: options.fvd_videos])


def _add_distribution(report: Report, suite: MetricSuite, shared: _Shared, generated: np.ndarray,
                      options: EvalOptions) -> None:  # fmt: skip
    """FVD/KVD between the shared sample of real clips and uint8 ``generated`` clips ``[N, T, H, W, C]``."""
    features = _i3d_features(suite, generated, "I3D features of the generated clips", options)
    scores, warning = distribution_scores(shared.real_features, features)
    report.metrics |= scores
    if warning:
        report.warnings.append(warning)


def _real_features(suite: MetricSuite, data: PreparedDataset, indices: np.ndarray,
                   options: EvalOptions) -> np.ndarray:  # fmt: skip
    """I3D features of the data set's clips ``indices``, cached per data set, sample and I3D file."""
    from t2vkit.fsutil import atomic_path
    from t2vkit.metrics.suite import real_features_cache

    cache = real_features_cache(data, indices, suite.settings["i3d"])
    features = np.load(cache, allow_pickle=False) if cache is not None and cache.is_file() else None
    if features is not None and features.shape == (len(indices), 400):
        return features
    features = _i3d_features(suite, data.clips[indices], "I3D features of real clips", options)
    if cache is not None:
        with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
            np.save(fh, features, allow_pickle=False)
    return features


def _i3d_features(suite: MetricSuite, videos: np.ndarray, description: str, options: EvalOptions) -> np.ndarray:
    from t2vkit.metrics.i3d import i3d_features

    step = 8
    options.progress(description, len(videos), 0)
    parts = []
    for start in range(0, len(videos), step):
        parts.append(i3d_features(suite.i3d, videos[start : start + step], step))
        options.progress("", None, len(parts[-1]))
    return np.concatenate(parts)


def _add_probe(report: Report, hits: dict[str, list[torch.Tensor]], weights: torch.Tensor | None = None) -> None:
    from t2vkit.metrics.probe import ALL

    right = {task: torch.cat(parts).double() for task, parts in hits.items()}
    report.probe["generated"] = {task: _summary(r, weights)["mean"] for task, r in right.items()}
    report.metrics["faithfulness"] = _summary(right[ALL], weights)


@torch.no_grad()
def _reconstruction(run_dir: Path, data: PreparedDataset, indices: np.ndarray, options: EvalOptions,
                    suite: MetricSuite, shared: _Shared, report: Report) -> None:  # fmt: skip
    from t2vkit.runs import load_decoder

    decoder, _ = load_decoder(run_dir, options.device)
    picked = set(shared.fvd_sample.tolist()) if shared.fvd_sample is not None else set()
    scores: dict[str, list[torch.Tensor]] = {"psnr": [], "ssim": [], **{name: [] for name in suite.perceptual}}
    hits: dict[str, list[torch.Tensor]] = {}
    fvd_recon = []  # reconstructions of the shared FVD sample
    options.progress("reconstructing the split", len(indices), 0)
    for start in range(0, len(indices), options.batch_size):
        batch = indices[start : start + options.batch_size]
        options.progress("", None, len(batch))
        video = torch.stack([clip_to_tensor(data.clips[i]) for i in batch]).to(options.device)
        recon = decoder.decode(decoder.encode(video)).clamp(-1, 1)
        scores["psnr"].append(psnr(recon, video).cpu())
        scores["ssim"].append(ssim(recon, video).cpu())
        for name, metric in suite.perceptual.items():
            scores[name].append(metric.video_distance(recon, video).cpu())
        if suite.probe is not None:
            for task, right in suite.probe.correct(recon, [data.records[i].bucket for i in batch]).items():
                hits.setdefault(task, []).append(right)
        keep = [j for j, i in enumerate(batch) if int(i) in picked]
        if keep:
            fvd_recon.append(tensor_to_clip(recon[keep]))
    report.metrics |= {key: _summary(torch.cat(values)) for key, values in scores.items()}
    if hits:
        _add_probe(report, hits)
    if fvd_recon:
        _add_distribution(report, suite, shared, np.concatenate(fvd_recon), options)


def _latent_encoder(config: dict[str, Any], options: EvalOptions) -> tuple[Any, str]:
    """The stage-1 autoencoder that embeds videos for diversity, or None and the reason why not."""
    from t2vkit.runs import load_decoder

    if "diversity" in options.skip:
        return None, "skipped with --skip"
    if options.num_per_prompt < 2:
        return None, "needs --num-per-prompt of 2 or more"
    path = options.latent_run or config.get("video_run", {}).get("path")
    if not path:
        return None, "no stage-1 encoder to embed videos with: pass --latent-run RUN_DIR"
    if not Path(path).is_dir():
        return None, f"the stage-1 run {path} is not there: pass --latent-run RUN_DIR"
    return load_decoder(path, options.device)[0], ""


@torch.no_grad()
def _text_to_video(run_dir: Path, data: PreparedDataset, indices: np.ndarray, options: EvalOptions,
                   suite: MetricSuite, shared: _Shared, latent_encoder: Any, report: Report) -> None:  # fmt: skip
    from t2vkit.metrics.diversity import mean_pairwise_distance
    from t2vkit.pipeline import Pipeline

    k, device = options.num_per_prompt, options.device
    sampling = options.sampling if report.stage == "diffusion" else {}
    pipeline = Pipeline.from_run(run_dir, device=device, options=sampling)
    if report.stage == "diffusion":  # what was drawn with: options over the run's recorded defaults
        report.settings["sampling"] = asdict(pipeline.sampler.config)
    counts = Counter(data.records[i].caption for i in indices)
    members = bucket_members(data, indices)
    bucket_of = {data.records[i].caption: data.records[i].bucket for i in indices}
    captions = sorted(counts)
    perceptual = {f"b_{name}": metric for name, metric in suite.perceptual.items()}
    scores: dict[str, list[torch.Tensor]] = {}
    weights: list[float] = []
    hits: dict[str, list[torch.Tensor]] = {}
    spread: dict[str, list[float]] = {"diversity": [], "diversity_real": [], "diversity_ratio": []}
    spread_weights: list[float] = []
    rng = torch.Generator().manual_seed(options.seed)
    options.progress(f"generating {k} per caption", len(captions), 0)
    for start in range(0, len(captions), 16):
        group = captions[start : start + 16]
        options.progress("", None, len(group))
        videos = pipeline.videos(group, n=k, seed=options.seed + start)  # uint8 [G*K, T, H, W, C]
        for j, caption in enumerate(group):
            refs = torch.stack([clip_to_tensor(data.clips[i]) for i in members[bucket_of[caption]]])
            mine = torch.stack([clip_to_tensor(v) for v in videos[j * k : (j + 1) * k]])
            for key, value in best_matches(mine, refs, perceptual=perceptual).items():
                scores.setdefault(key, []).append(value.cpu())
            weights += [counts[caption] / k] * k
            if suite.probe is not None:
                for task, right in suite.probe.correct(mine, [bucket_of[caption]] * k).items():
                    hits.setdefault(task, []).append(right)
            if latent_encoder is not None and len(refs) >= 2:
                real = refs[torch.randperm(len(refs), generator=rng)[:k]]
                generated = mean_pairwise_distance(latent_encoder.encode(mine.to(device)).cpu())
                reference = mean_pairwise_distance(latent_encoder.encode(real.to(device)).cpu())
                spread["diversity"].append(generated)
                spread["diversity_real"].append(reference)
                spread["diversity_ratio"].append(generated / max(reference, 1e-12))
                spread_weights.append(counts[caption])
    w = torch.tensor(weights)
    report.metrics |= {key: _summary(torch.cat(values), w) for key, values in scores.items()}
    if spread_weights:
        sw = torch.tensor(spread_weights, dtype=torch.float64)
        report.metrics |= {key: _summary(torch.tensor(values), sw) for key, values in spread.items()}
    if hits:
        _add_probe(report, hits, w)
    if shared.fvd_sample is not None:
        prompts = [data.records[i].caption for i in shared.fvd_sample]
        options.progress("generating for FVD/KVD", len(prompts), 0)
        chunks = []
        for s in range(0, len(prompts), 16):
            chunks.append(pipeline.videos(prompts[s : s + 16], n=1, seed=options.seed + 1 + s))
            options.progress("", None, len(chunks[-1]))
        generated = np.concatenate(chunks)
        _add_distribution(report, suite, shared, generated, options)
