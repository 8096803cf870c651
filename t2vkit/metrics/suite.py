"""The optional metric networks of an evaluation, each either loaded or skipped with the reason.

LPIPS and DISTS need ImageNet backbones the user names, FVD/KVD an I3D file, the semantic probe a
short training on the data set (cached). Whatever cannot be had is reported as skipped, never
replaced by another number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from t2vkit.metrics.frame_distance import FrameDistance

# What ``--skip`` accepts: metric families, and the report columns each covers in a stage-1 report
# and in a text-to-video report.
_SHARED = {"fvd": ("fvd", "kvd"), "probe": ("faithfulness", "probe_real")}
COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "video": {"lpips": ("lpips",), "dists": ("dists",), **_SHARED},
    "text": {"lpips": ("b_lpips",), "dists": ("b_dists",), **_SHARED,
             "diversity": ("diversity", "diversity_real", "diversity_ratio")},
}  # fmt: skip
FAMILIES = tuple(COLUMNS["text"])


@dataclass
class WeightPaths:
    """Files named by the user (else read from the T2VKIT_* environment variables)."""

    i3d: str | Path | None = None
    lpips_backbone: str | Path | None = None
    lpips_heads: str | Path | None = None
    dists_backbone: str | Path | None = None
    dists_weights: str | Path | None = None


@dataclass
class MetricSuite:
    perceptual: dict[str, FrameDistance] = field(default_factory=dict)  # "lpips"/"dists" → loaded metric
    i3d: Any = None
    probe: Any = None
    skipped: dict[str, str] = field(default_factory=dict)  # family → why it was not computed
    settings: dict[str, Any] = field(default_factory=dict)


def build_suite(paths: WeightPaths, data: Any, device: str, skip: set[str], probe_config: Any = None,
                progress: Any = None) -> MetricSuite:  # fmt: skip
    """Load what can be loaded; everything else goes to ``skipped`` with its reason."""
    suite = MetricSuite()
    for family in skip:
        suite.skipped[family] = "skipped with --skip"
    if "lpips" not in skip:
        from t2vkit.metrics.lpips import load_lpips, resolve_lpips

        files, why = resolve_lpips(paths.lpips_backbone, paths.lpips_heads)
        _load(suite, "lpips", why, lambda: load_lpips(*files).to(device))
    if "dists" not in skip:
        from t2vkit.metrics.dists import load_dists, resolve_dists

        files, why = resolve_dists(paths.dists_backbone, paths.dists_weights)
        _load(suite, "dists", why, lambda: load_dists(*files).to(device))
    if "fvd" not in skip:
        from t2vkit.metrics.i3d import load_i3d, resolve_i3d_path

        path = resolve_i3d_path(paths.i3d)
        if path:
            from t2vkit.fsutil import sha256_file

            suite.i3d = load_i3d(path, device)
            suite.settings["i3d"] = {"path": str(path), "sha256": sha256_file(path), "bn_eps": suite.i3d.bn_eps}
        else:
            suite.skipped["fvd"] = "no I3D weights: pass --i3d PATH or set T2VKIT_I3D"
    if "probe" not in skip:
        from t2vkit.metrics.probe import load_or_train_probe

        suite.probe = load_or_train_probe(data, device, config=probe_config, progress=progress)
        suite.settings["probe"] = {"tasks": suite.probe.tasks, "training": suite.probe.info,
                                   "from_cache": suite.probe.from_cache}  # fmt: skip
    return suite


def _load(suite: MetricSuite, family: str, why: str, load: Any) -> None:
    if why:
        suite.skipped[family] = why
    else:
        suite.perceptual[family] = load()


def skipped_columns(skipped: dict[str, str], kind: str) -> dict[str, str]:
    """Family → why, as report column → why for a ``kind`` ("video" or "text") report."""
    return {column: why for family, why in skipped.items() for column in COLUMNS[kind].get(family, ())}


def real_features_cache(data: Any, indices: np.ndarray, i3d_settings: dict[str, Any]) -> Path | None:
    """Where the I3D features of a data set's real clips ``indices`` are kept, so evaluating several
    runs on one data set computes them once; None for a data set without a fingerprint."""
    import hashlib
    import json

    from t2vkit.fsutil import cache_root

    fingerprint = data.meta.get("fingerprint")
    if not fingerprint:
        return None
    key = json.dumps({"fingerprint": fingerprint, "i3d": i3d_settings["sha256"], "bn_eps": i3d_settings["bn_eps"],
                      "indices": hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest()})  # fmt: skip
    return cache_root() / "i3d" / f"{data.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"


def distribution_scores(real: np.ndarray, generated: np.ndarray) -> tuple[dict[str, dict[str, float]], str | None]:
    """FVD and KVD of two I3D feature sets ``[N, 400]``, with a warning when the sets are too small."""
    from t2vkit.metrics.distribution import frechet_distance, kernel_distance, sample_size_warning

    kvd, kvd_std = kernel_distance(real, generated)
    scores = {"fvd": {"mean": frechet_distance(real, generated)},
              "kvd": {"mean": kvd} | ({} if np.isnan(kvd_std) else {"std": kvd_std})}  # fmt: skip
    return scores, sample_size_warning(len(real), len(generated), real.shape[1])

