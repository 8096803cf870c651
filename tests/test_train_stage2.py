"""Stage 2 and generation as a user runs them: train a tiny stage-1 run, align text to it with the
real MiniLM encoder, then `t2vkit generate` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from t2vkit.data.prepare import prepare
from t2vkit.errors import ConfigError
from t2vkit.pipeline import Pipeline
from t2vkit.training.config import Sources
from t2vkit.training.run import TrainRequest, train
from t2vkit.video_io import read_video

T2VKIT = str(Path(sys.executable).parent / "t2vkit")
STAGE1 = ("decoder.width=4", "decoder.mults=[1, 2]", "decoder.disc_v_width=4", "decoder.disc_v_scales=1",
          "decoder.disc_z_hidden=[16]")  # fmt: skip
COMMON = ("train.batch_size=4", "train.num_workers=0", "train.eval_every=3", "train.val_clips=8", "train.log_every=1")
TINY_ALIGNER = ("aligner.hidden=16", "aligner.shared_dim=8", "aligner.disc_s_hidden=[16]", "train.noise_variants=2")


@pytest.fixture(scope="module")
def syncdraw(mnist_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sd") / "syncdraw"
    prepare("syncdraw-mm", out, {"mnist": mnist_dir, "num_train": 24, "num_val": 8, "num_test": 8})
    return out


@pytest.fixture(scope="module")
def stage1(syncdraw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("s1") / "wae3d"
    request = TrainRequest(stage="video", dataset=syncdraw, out=out, decoder="wae3d", device="cpu",
                           sources=Sources(overrides=(*STAGE1, *COMMON, "train.max_steps=2")))  # fmt: skip
    train(request)
    return out


def align(syncdraw: Path, stage1: Path, out: Path, aligner: str = "progressive", *extra: str):
    overrides = (*COMMON, "train.max_steps=3", *(TINY_ALIGNER if aligner == "progressive" else ()), *extra)
    request = TrainRequest(stage="align", dataset=syncdraw, out=out, aligner=aligner, encoder="minilm",
                           video=stage1, device="cpu", sources=Sources(overrides=overrides))  # fmt: skip
    return train(request)


@pytest.fixture(scope="module")
def model(syncdraw, stage1, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("s2") / "progressive"
    align(syncdraw, stage1, out)
    return out


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([T2VKIT, *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def test_the_stage2_run_is_self_contained(model, stage1):
    config = json.loads((model / "config.json").read_text())
    assert config["stage"] == "align" and config["aligner"]["name"] == "progressive"
    assert config["aligner"]["text_dim"] == 384 and config["aligner"]["latent_shape"] == [64]
    assert config["encoder"]["name"] == "minilm" and config["encoder"]["identity"].startswith("minilm-")
    assert config["video_run"]["path"] == str(stage1) and config["decoder"]["name"] == "wae3d"
    assert config["augmentation"] == {"noise_word_p": 0.15, "variants_per_caption": 2}
    assert (model / "aligner.safetensors").is_file() and (model / "decoder.safetensors").is_file()
    assert (model / "decoder.safetensors").read_bytes() == (stage1 / "decoder.safetensors").read_bytes()
    val = [json.loads(line)["val"] for line in (model / "metrics.jsonl").read_text().splitlines() if '"val"' in line]
    assert val and {"b_psnr", "b_ssim"} <= set(val[-1]) and val[-1]["b_psnr"] > 0


def test_generate_writes_an_mp4_of_16_frames_of_64x64_and_the_same_seed_repeats(model, tmp_path):
    first = cli("generate", "digit 3 is moving up and down", "--model", str(model), "--seed", "7",
                "--out", str(tmp_path / "new" / "a.mp4"))  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == str(tmp_path / "new" / "a.mp4")  # the missing folder was created
    video = read_video(tmp_path / "new" / "a.mp4")
    assert video.shape == (16, 64, 64, 3)
    assert cli("generate", "digit 3 is moving up and down", "--model", str(model), "--seed", "7",
               "--out", str(tmp_path / "b.mp4")).returncode == 0  # fmt: skip
    assert np.array_equal(video, read_video(tmp_path / "b.mp4"))


def test_prompts_file_num_gif_sheet_and_scale(model, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two prompts\ndigit 1 is moving left and right\n\ndigit 8 is moving up and down\n")
    result = cli("generate", "--prompts", str(prompts), "--num", "2", "--model", str(model), "--gif", "--sheet",
                 "--scale", "2", "--out", str(tmp_path / "out" / "clip.mp4"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["clip-01-01.gif", "clip-01-01.mp4", "clip-01-02.gif", "clip-01-02.mp4", "clip-02-01.gif",
                     "clip-02-01.mp4", "clip-02-02.gif", "clip-02-02.mp4", "clip-sheet.png"]  # fmt: skip
    assert read_video(tmp_path / "out" / "clip-02-01.mp4").shape == (16, 128, 128, 3)


def test_bad_prompts_and_outputs_get_one_clear_error(model, tmp_path):
    for prompt, message in (("", "the prompt is empty"), ("   ", "the prompt is empty")):
        result = cli("generate", prompt, "--model", str(model), "--out", str(tmp_path / "x.mp4"))
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.mp4").exists()
    target = tmp_path / "taken.mp4"
    target.write_bytes(b"mine")
    refused = cli("generate", "digit 2 is moving up and down", "--model", str(model), "--out", str(target))
    assert refused.returncode == 1 and "already exists; pass --overwrite" in refused.stderr
    assert target.read_bytes() == b"mine"
    assert cli("generate", "digit 2 is moving up and down", "--model", str(model), "--out", str(target),
               "--overwrite").returncode == 0  # fmt: skip
    assert read_video(target).shape[0] == 16
    wrong = cli("generate", "digit 2 is moving up and down", "--model", str(model), "--sampler", "nope")
    assert wrong.returncode == 1 and "unknown sampler 'nope'" in wrong.stderr


def test_long_and_non_ascii_prompts(model, tmp_path):
    pipeline = Pipeline.from_run(model)
    videos = pipeline.videos(["Ziffer 3 bewegt sich nach oben — 数字が動く", "digit 4 " * 400], seed=1)
    assert videos.shape == (2, 16, 64, 64, 1) and videos.dtype == np.uint8
    long = cli("generate", "digit 4 is moving " * 200, "--model", str(model), "--out", str(tmp_path / "l.mp4"))
    assert long.returncode == 0 and "limit of 256 tokens" in long.stderr


def test_a_stage1_run_of_another_data_set_is_refused(stage1, tmp_path):
    prepare("shapes", tmp_path / "shapes", {"num_train": 8, "num_val": 4, "num_test": 0})
    with pytest.raises(ConfigError, match=r"was trained on 'syncdraw-mm', not on 'shapes'"):
        align(tmp_path / "shapes", stage1, tmp_path / "x")


def test_a_latent_size_other_than_the_stage1_runs_is_refused(syncdraw, stage1, tmp_path):
    with pytest.raises(ConfigError, match=r"aligner.latent_shape = \[32\] conflicts with latent_shape = \[64\]"):
        align(syncdraw, stage1, tmp_path / "y", "progressive", "aligner.latent_shape=[32]")
    align(syncdraw, stage1, tmp_path / "z", "progressive", "aligner.latent_shape=[64]")  # the same value is fine


@pytest.mark.parametrize("aligner", ["clip", "imagebind", "direct", "vicreg", "byol"])
def test_every_baseline_trains_and_generates(syncdraw, stage1, tmp_path, aligner):
    out = tmp_path / aligner
    extra = ("aligner.hidden=16",) + (("aligner.shared_dim=8",) if aligner != "direct" else ())
    summary, _ = align(syncdraw, stage1, out, aligner, *extra)
    assert summary.step == 3
    assert Pipeline.from_run(out).videos(["digit 5 is moving left and right"]).shape == (1, 16, 64, 64, 1)


def test_evaluate_a_stage1_and_a_stage2_run(syncdraw, stage1, model, tmp_path):
    report = tmp_path / "r.json"
    result = cli("evaluate", str(stage1), "--dataset", str(syncdraw), "--json", str(report),
                 "--markdown", str(tmp_path / "t.md"), "--skip", "probe")  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["stage"] == "video" and data["clips"] == 8 and set(data["metrics"]) == {"psnr", "ssim"}
    assert data["skipped"]["fvd"] == data["skipped"]["kvd"] == "no I3D weights: pass --i3d PATH or set T2VKIT_I3D"
    assert data["skipped"]["lpips"].startswith("no AlexNet weights: pass --lpips-backbone")
    assert data["skipped"]["faithfulness"] == "skipped with --skip"
    assert set(data["references"]["split_median"]) == {"psnr", "ssim"}
    table = (tmp_path / "t.md").read_text()
    assert "| run | PSNR ↑ | SSIM ↑ | LPIPS ↓ | DISTS ↓ | FVD ↓ | KVD ↓ |" in table and "not computed" in table
    result = cli("evaluate", str(model), "--dataset", str(syncdraw), "--split", "val", "--json", str(report),
                 "--skip", "probe,fvd")  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert set(data["metrics"]) == {"b_psnr", "b_ssim"} and data["metrics"]["b_psnr"]["mean"] > 5
    assert "b_lpips" in data["skipped"] and "lpips" not in data["skipped"]
    assert set(data["references"]["bucket_median"]) == {"b_psnr", "b_ssim"}
    assert data["references"]["bucket_median"]["b_psnr"] > 5
    prepare("shapes", tmp_path / "shapes", {"num_train": 4, "num_val": 0, "num_test": 4})
    wrong = cli("evaluate", str(stage1), "--dataset", str(tmp_path / "shapes"))
    assert wrong.returncode == 1 and "has clips of shape [16, 64, 64, 3]" in wrong.stderr
    unknown = cli("evaluate", str(stage1), "--dataset", str(syncdraw), "--skip", "psnr")
    assert unknown.returncode == 1 and "--skip takes lpips, dists, fvd, probe, diversity; got psnr" in unknown.stderr
