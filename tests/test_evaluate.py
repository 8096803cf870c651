"""`evaluate` with every metric family wired in: the probe, FVD/KVD (with a stand-in I3D, the real one
is tested in test_fvd.py) and LPIPS (random backbone weights in torchvision's layout)."""

from __future__ import annotations

import math

import pytest
import torch

from t2vkit.evaluate import evaluate
from t2vkit.metrics.probe import ProbeConfig
from t2vkit.metrics.suite import WeightPaths
from t2vkit.report import markdown

TINY_PROBE = ProbeConfig(width=4, batch_size=8, epochs=1)


class _CheapI3D(torch.nn.Module):
    """[B, 3, T, 224, 224] → [B, 400]: random projections of frame means, varied enough for a covariance."""

    bn_eps = 1e-3

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 16 * 14 * 14, 400)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool3d(x, (16, 14, 14))
        return self.proj(pooled.flatten(1))


@pytest.fixture
def cheap_i3d(monkeypatch, tmp_path):
    path = tmp_path / "i3d.safetensors"
    path.write_bytes(b"not read: load_i3d is replaced")
    monkeypatch.setattr("t2vkit.metrics.i3d.load_i3d", lambda p, device="cpu": (torch.manual_seed(0), _CheapI3D())[1])
    return path


@pytest.fixture
def lpips_files(tmp_path):
    from safetensors.torch import save_file

    from t2vkit.models.backbones import alexnet

    torch.manual_seed(0)
    backbone = tmp_path / "alexnet.safetensors"
    save_file({k: v.contiguous() for k, v in alexnet().state_dict().items()}, backbone)  # features.N.*
    heads = tmp_path / "heads.safetensors"
    save_file({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))},
              heads)  # fmt: skip
    return backbone, heads


def test_a_stage1_report_has_every_table1_column(stage1, cheap_i3d, lpips_files):
    data = stage1.parent / "syncdraw"
    weights = WeightPaths(i3d=cheap_i3d, lpips_backbone=lpips_files[0], lpips_heads=lpips_files[1])
    report = evaluate(stage1, data, weights=weights, fvd_videos=6, probe_config=TINY_PROBE)
    assert {"psnr", "ssim", "lpips", "fvd", "kvd", "faithfulness", "probe_real"} <= set(report.metrics)
    assert report.metrics["fvd"]["mean"] > 0 and "std" not in report.metrics["fvd"]  # one FVD for the whole set
    assert 0 <= report.metrics["faithfulness"]["mean"] <= 1 and report.metrics["lpips"]["mean"] > 0
    assert report.skipped == {"dists": "no VGG16 weights: pass --dists-backbone or set T2VKIT_DISTS_BACKBONE"}
    assert report.warnings == ["FVD is unreliable with 6 real and 6 generated videos: a covariance of 400 feature "
                               "dimensions needs more than 400 videos per set to be non-singular (KVD is noisy at "
                               "this size too)"]  # fmt: skip
    assert set(report.probe["generated"]) == set(report.probe["real"]) == {"digit", "motion", "bucket", "all"}
    assert set(report.references) == {"split_median", "real_val"}  # FVD/KVD's floor: 6 val clips vs the 6 test ones
    assert set(report.references["real_val"]) == {"fvd", "kvd"} and report.references["real_val"]["fvd"] > 0
    assert report.settings["i3d"]["bn_eps"] == 1e-3 and report.settings["probe"]["tasks"]["motion"] == [
        "left and right", "up and down"]  # fmt: skip
    table = markdown([report])
    assert "| FVD ↓ | KVD ↓ | probe faithfulness ↑ | probe acc. (real) |" in table
    assert "DISTS ↓: no VGG16 weights" in table


def test_the_real_clips_i3d_features_are_computed_once_per_data_set(stage1, cheap_i3d, monkeypatch, tmp_path):
    from t2vkit.fsutil import cache_root
    from t2vkit.metrics import i3d

    monkeypatch.setenv("T2VKIT_CACHE", str(tmp_path / "cache"))
    data = stage1.parent / "syncdraw"
    options = dict(weights=WeightPaths(i3d=cheap_i3d), fvd_videos=5, skip={"probe", "lpips", "dists"})
    first = evaluate(stage1, data, **options)
    cached = list((cache_root() / "i3d").glob("syncdraw-mm-*.npy"))
    assert len(cached) == 2  # the test clips, and the val clips of the FVD floor
    seen = []
    real_call = i3d.i3d_features
    monkeypatch.setattr(i3d, "i3d_features", lambda model, videos, batch_size=8: seen.append(len(videos))
                        or real_call(model, videos, batch_size))  # fmt: skip
    again = evaluate(stage1, data, **options)
    assert sum(seen) == 5  # only the reconstructions: the real clips' features came from the cache
    assert again.metrics["fvd"] == first.metrics["fvd"] and again.references == first.references


def test_a_text_to_video_report_scores_generated_videos_with_the_probe_and_fvd(aligned, stage1, cheap_i3d):
    data = stage1.parent / "syncdraw"
    report = evaluate(aligned, data, weights=WeightPaths(i3d=cheap_i3d), fvd_videos=4, num_per_prompt=2,
                      probe_config=TINY_PROBE, skip={"lpips", "dists"})  # fmt: skip
    assert {"b_psnr", "b_ssim", "fvd", "kvd", "faithfulness", "probe_real", "diversity_ratio"} <= set(report.metrics)
    assert math.isfinite(report.metrics["kvd"]["mean"]) and report.metrics["fvd"]["mean"] > 0
    generated = report.probe["generated"]
    assert all(0 <= v <= 1 for v in generated.values()) and generated["all"] <= min(generated["digit"],
                                                                                      generated["motion"])  # fmt: skip
    assert report.skipped["b_lpips"] == "skipped with --skip" and "lpips" not in report.skipped


def test_several_runs_make_one_table(stage1, aligned, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    data = stage1.parent / "syncdraw"
    t2vkit = str(Path(sys.executable).parent / "t2vkit")
    result = subprocess.run([t2vkit, "evaluate", str(stage1), str(aligned), "--dataset", str(data), "--skip",
                             "probe,fvd", "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "t.md")],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    reports = json.loads((tmp_path / "r.json").read_text())
    assert [r["stage"] for r in reports] == ["video", "align"]
    rows = [line for line in (tmp_path / "t.md").read_text().splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| run | PSNR ↑ | SSIM ↑ | B-PSNR ↑ | B-SSIM ↑ |")
    assert rows[1].startswith(f"| {stage1.name} | ") and rows[2].startswith(f"| {aligned.name} | — | — | ")
    assert [row.split(" | ")[0] for row in rows[3:]] == ["| *bucket median clip*", "| *split median clip*"]
    assert "split median clip" in result.stdout
