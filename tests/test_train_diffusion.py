"""Stage "diffusion" and diffusion sampling as a user runs them, in pixel space (tiny UNet)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from t2vkit.data.prepare import prepare
from t2vkit.errors import ConfigError, T2VError
from t2vkit.pipeline import Pipeline
from t2vkit.training.config import Sources
from t2vkit.training.run import TrainRequest, train
from t2vkit.video_io import read_video

T2VKIT = str(Path(sys.executable).parent / "t2vkit")
TINY_UNET = ("denoiser.base_channels=8", "denoiser.channel_mult=[1, 2]", "denoiser.num_res_blocks=1",
             "denoiser.attention_levels=[1]", "denoiser.heads=2", "denoiser.max_text_len=16")  # fmt: skip
COMMON = ("train.batch_size=4", "train.num_workers=0", "train.eval_every=2", "train.val_clips=4", "train.log_every=1")


@pytest.fixture(scope="module")
def syncdraw(mnist_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sd") / "syncdraw"
    prepare("syncdraw-mm", out, {"mnist": mnist_dir, "num_train": 8, "num_val": 4, "num_test": 4, "frames": 8,
                                 "size": 32})  # fmt: skip
    return out


@pytest.fixture(scope="module")
def model(syncdraw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vdm") / "pixel"
    request = TrainRequest(stage="diffusion", dataset=syncdraw, out=out, encoder="minilm", device="cpu",
                           sources=Sources(overrides=(*TINY_UNET, *COMMON, "train.max_steps=3")))  # fmt: skip
    train(request)
    return out


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([T2VKIT, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def test_a_pixel_space_run_records_everything_generation_needs(model):
    config = json.loads((model / "config.json").read_text())
    assert config["stage"] == "diffusion" and config["decoder"] == {"name": "pixel", "channels": 1, "frames": 8,
                                                                    "size": 32}  # fmt: skip
    denoiser = config["denoiser"]
    assert denoiser["name"] == "diffusion" and denoiser["latent_scale"] == 1.0 and denoiser["text_dim"] == 384
    assert (denoiser["channels"], denoiser["frames"], denoiser["size"]) == (1, 8, 32)
    assert {"denoiser.safetensors", "decoder.safetensors"} <= {p.name for p in model.iterdir()}
    records = [json.loads(line) for line in (model / "metrics.jsonl").read_text().splitlines()]
    assert [r["val"]["mse"] > 0 for r in records if "val" in r] == [True, True]
    assert (model / "samples" / "step_0000002.png").is_file()


def test_generate_with_the_diffusion_sampler(model, tmp_path):
    result = cli("generate", "digit 3 is moving up and down", "--model", str(model), "--num", "2", "--steps", "3",
                 "--seed", "5", "--out", str(tmp_path / "d.mp4"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    a, b = read_video(tmp_path / "d-01.mp4"), read_video(tmp_path / "d-02.mp4")
    assert a.shape == (8, 32, 32, 3) and not np.array_equal(a, b)  # two different samples for one prompt
    pipeline = Pipeline.from_run(model, options={"steps": 3, "cfg": 2.0, "mg_alpha": 0.0})
    first = pipeline.videos(["digit 1 is moving left and right"], n=2, seed=11)
    again = pipeline.videos(["digit 1 is moving left and right"], n=2, seed=11)
    assert first.shape == (2, 8, 32, 32, 1) and np.array_equal(first, again)  # seeded and reproducible


@pytest.mark.parametrize(
    ("options", "message"),
    [({"steps": 0}, "steps"), ({"steps": 1001}, "steps"), ({"cfg": -1.0}, "cfg")],
)
def test_bad_sampling_options_are_one_clear_error(model, options, message):
    with pytest.raises((ConfigError, T2VError), match=message):
        Pipeline.from_run(model, options=options)


def test_samplers_and_runs_must_match(model, tmp_path):
    wrong = cli("generate", "digit 3 is moving up and down", "--model", str(model), "--sampler", "direct",
                "--out", str(tmp_path / "x.mp4"))  # fmt: skip
    assert wrong.returncode == 1 and "use --sampler diffusion" in wrong.stderr
    steps_on_direct = cli("generate", "x", "--model", str(model), "--sampler", "direct", "--steps", "3")
    assert steps_on_direct.returncode == 1


def test_a_vector_latent_stage1_run_is_refused(syncdraw, tmp_path):
    stage1 = tmp_path / "wae3d"
    train(TrainRequest(stage="video", dataset=syncdraw, out=stage1, decoder="wae3d", device="cpu",
                       sources=Sources(overrides=("decoder.width=4", "decoder.mults=[1, 2]", "decoder.disc_v_width=4",
                                                  "decoder.disc_v_scales=1", "decoder.disc_z_hidden=[16]", *COMMON,
                                                  "train.max_steps=1"))))  # fmt: skip
    with pytest.raises(ConfigError, match=r"vector latent \(64,\); the diffusion sampler needs a spatial one"):
        train(TrainRequest(stage="diffusion", dataset=syncdraw, out=tmp_path / "d", video=stage1, encoder="minilm",
                           device="cpu", sources=Sources(overrides=(*TINY_UNET, *COMMON))))  # fmt: skip


def test_evaluate_reports_diversity_against_real_clips(model, syncdraw, tmp_path):
    stage1 = tmp_path / "wae3d"
    train(TrainRequest(stage="video", dataset=syncdraw, out=stage1, decoder="wae3d", device="cpu",
                       sources=Sources(overrides=("decoder.width=4", "decoder.mults=[1, 2]", "decoder.disc_v_width=4",
                                                  "decoder.disc_v_scales=1", "decoder.disc_z_hidden=[16]", *COMMON,
                                                  "train.max_steps=1"))))  # fmt: skip
    from t2vkit.evaluate import evaluate

    report = evaluate(model, syncdraw, split="val", num_per_prompt=2, latent_run=stage1, skip={"probe", "fvd"})
    assert {"b_psnr", "b_ssim", "diversity", "diversity_real", "diversity_ratio"} <= set(report.metrics)
    assert report.metrics["diversity"]["mean"] > 0  # two samples of one prompt differ
    alone = evaluate(model, syncdraw, split="val", num_per_prompt=2, skip={"probe", "fvd"})
    assert alone.skipped["diversity"].startswith("no stage-1 encoder")
