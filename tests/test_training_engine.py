"""The training engine, driven through ``t2vkit.training.run.train`` with a throwaway decoder
plugin and a throwaway data set, so that these tests exercise the engine alone and stay fast."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from t2vkit import hookimpl, registry
from t2vkit.checkpoint import load_tensors
from t2vkit.data.prepare import prepare
from t2vkit.errors import CheckpointError, ConfigError, DataError, T2VError
from t2vkit.interfaces import ClipSink, DatasetBuilder, VideoAutoencoder, VideoObjective
from t2vkit.training.config import Sources, TrainConfig, check_resumable
from t2vkit.training.engine import NonFiniteLoss, TrainingInterrupted
from t2vkit.training.run import TrainRequest, train

# --------------------------------------------------------------------------- throwaway plugins


@dataclass
class SquaresConfig:
    clips: int = 10


class Squares(DatasetBuilder):
    """A 4-pixel square moving right on an 8×8 canvas, 4 frames; 8 train clips, 2 val."""

    Config = SquaresConfig

    def sources(self) -> dict[str, Path]:
        return {}

    def build(self, sink: ClipSink) -> None:
        for i in range(self.config.clips):
            clip = np.zeros((4, 8, 8, 1), np.uint8)
            for t in range(4):
                clip[t, i % 4 : i % 4 + 4, t : t + 4] = 200
            sink.add(clip, "a square", "square", "val" if i >= 8 else "train")


@dataclass
class TinyConfig:
    channels: int = 1
    frames: int = 4
    size: int = 8
    latent_dim: int = 6
    fail_at_call: int = 0  # make the objective's pixel term NaN (or raise Ctrl-C) on this call
    fail_with: str = "nan"


class TinyObjective(VideoObjective):
    """L1 reconstruction + a latent discriminator fed with random prior samples (exercising the RNG)."""

    def __init__(self, config: TinyConfig) -> None:
        self.config = config
        self.disc = nn.Sequential(nn.Linear(config.latent_dim, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
        self.calls = 0

    def auxiliaries(self) -> dict[str, nn.Module]:
        return {"disc_z": self.disc}

    def autoencoder_loss(self, video, out):
        self.calls += 1
        pixel = (out["recon"] - video).abs().mean()
        if self.calls == self.config.fail_at_call:
            if self.config.fail_with == "interrupt":
                os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C during this step
            else:
                pixel = pixel * float("nan")
        fm = (self.disc[0](torch.randn_like(out["z"])).mean(0) - self.disc[0](out["z"]).mean(0)).pow(2).mean()
        return {"pixel": pixel, "fm_z": 0.1 * fm}

    def auxiliary_loss(self, video, out):
        real, fake = self.disc(torch.randn_like(out["z"])), self.disc(out["z"])
        loss = nn.functional.softplus(-real).mean() + nn.functional.softplus(fake).mean()
        return {"disc_z": loss}


class TinyAE(nn.Module, VideoAutoencoder):
    Config = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        n = config.channels * config.frames * config.size * config.size
        self.enc = nn.Linear(n, config.latent_dim)
        self.dec = nn.Linear(config.latent_dim, n)
        self._objective = TinyObjective(config)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    def encode(self, video):
        return self.enc(video.flatten(1))

    def decode(self, z):
        c = self.config
        return torch.tanh(self.dec(z)).view(-1, c.channels, c.frames, c.size, c.size)

    def objective(self) -> VideoObjective:
        return self._objective


class Plugin:
    @hookimpl
    def register_datasets(self, register):
        register("squares", Squares)

    @hookimpl
    def register_decoders(self, register):
        register("tiny-ae", TinyAE)


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> Path:
    registry.register_plugin(Plugin(), name="engine-test", package="engine-test")
    out = tmp_path_factory.mktemp("data") / "squares"
    prepare("squares", out)
    yield out
    registry.unregister_plugin("engine-test")


def run(data: Path, out: Path, *sets: str, resume: bool = False, steps: int = 6):
    base = ("train.batch_size=4", "train.num_workers=0", "train.eval_every=3", "train.save_every=3",
            "train.log_every=1", "train.lr=0.01", f"train.max_steps={steps}")  # fmt: skip
    request = TrainRequest(stage="video", dataset=data, out=out, decoder="tiny-ae", resume=resume, device="cpu",
                           sources=Sources(preset="quick", overrides=base + sets))  # fmt: skip
    return train(request)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        out |= {f"{path.stem}/{k}": v for k, v in load_tensors(path).items()}
    return out


# --------------------------------------------------------------------------- tests


def test_a_run_writes_config_weights_checkpoints_metrics_and_samples(squares, tmp_path):
    summary, _ = run(squares, tmp_path / "run")
    root = tmp_path / "run"
    config = json.loads((root / "config.json").read_text())
    assert config["format_version"] == 1 and config["stage"] == "video"
    assert config["decoder"] == {"name": "tiny-ae", "channels": 1, "frames": 4, "size": 8, "latent_dim": 6,
                                 "fail_at_call": 0, "fail_with": "nan"}  # fmt: skip
    assert config["train"]["max_steps"] == 6 and config["dataset"]["clip_shape"] == [4, 8, 8, 1]
    assert (root / "decoder.safetensors").is_file()
    assert json.loads((root / "checkpoints/last/state.json").read_text())["step"] == 6
    assert {p.name for p in (root / "checkpoints/last").iterdir()} == {
        "decoder.safetensors", "disc_z.safetensors", "optimizer.autoencoder.safetensors",
        "optimizer.auxiliary.safetensors", "state.json"}  # fmt: skip
    records = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if "train" in r]
    assert train_steps == [1, 2, 3, 4, 5, 6] and {"pixel", "fm_z", "disc_z"} <= set(records[0]["train"])
    val = [r for r in records if "val" in r]
    assert [r["step"] for r in val] == [3, 6] and val[0]["val"]["psnr"] > 0 and 0 < val[0]["val"]["ssim"] <= 1
    assert sorted(p.name for p in (root / "samples").iterdir()) == [
        "step_0000003.mp4", "step_0000003.png", "step_0000006.mp4", "step_0000006.png"]  # fmt: skip
    assert summary.step == 6 and summary.best is not None
    assert not [p for p in root.rglob("*") if ".tmp" in p.name]  # nothing half-written left


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(squares, tmp_path, schedule):
    sets = (f"train.lr_schedule={schedule!r}", "train.warmup_steps=2")
    run(squares, tmp_path / "straight", *sets, steps=6)
    run(squares, tmp_path / "halves", *sets, steps=3)
    run(squares, tmp_path / "halves", *sets, steps=6, resume=True)
    a, b = weights(tmp_path / "straight/checkpoints/last"), weights(tmp_path / "halves/checkpoints/last")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # weights and Adam moments


def test_the_last_checkpoint_records_the_best_validation_including_its_own_step(squares, tmp_path):
    summary, _ = run(squares, tmp_path / "r", "train.eval_every=2", "train.save_every=2")
    state = json.loads((tmp_path / "r/checkpoints/last/state.json").read_text())
    assert state["best"] == summary.best and summary.best["step"] in (2, 4, 6)
    again, _ = run(squares, tmp_path / "r", "train.eval_every=2", "train.save_every=2", resume=True)
    assert again.step == 6 and again.best == summary.best  # a finished run's resume reports the same best


def test_the_learning_rate_warms_up_then_follows_its_schedule(squares, tmp_path):
    run(squares, tmp_path / "r", "train.lr_schedule='cosine'", "train.warmup_steps=2", "train.min_lr=0.001")
    records = [json.loads(line) for line in (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if "train" in r]
    expected = [0.005, 0.01] + [0.001 + 0.0045 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert lrs == pytest.approx(expected)  # peak after warm-up, then down toward min_lr at step 6
    config = TrainConfig(lr=1.0, lr_schedule="cosine", min_lr=0.1)
    assert config.learning_rate(10, 10) == pytest.approx(0.1) and config.learning_rate(5, 10) == pytest.approx(0.55)
    assert TrainConfig(lr=0.3).learning_rate(7, 10) == 0.3
    with pytest.raises(ConfigError, match=r"min_lr <= lr"):
        run(squares, tmp_path / "bad", "train.min_lr=0.1")


def test_ctrl_c_saves_and_the_run_resumes_to_the_same_weights(squares, tmp_path):
    with pytest.raises(TrainingInterrupted, match=r"interrupted at step 5;.*--resume"):
        run(squares, tmp_path / "cut", "decoder.fail_at_call=5", "decoder.fail_with=interrupt")
    assert json.loads((tmp_path / "cut/checkpoints/last/state.json").read_text())["step"] == 5  # step 5 finished
    # The interrupted run's config differs only in the (test-only) failure knob: resume it as stored.
    stored = json.loads((tmp_path / "cut/config.json").read_text())
    stored["decoder"]["fail_at_call"] = 0
    (tmp_path / "cut/config.json").write_text(json.dumps(stored))
    run(squares, tmp_path / "cut", "decoder.fail_with=interrupt", resume=True)
    run(squares, tmp_path / "whole", "decoder.fail_with=interrupt")
    a, b = weights(tmp_path / "cut/checkpoints/last"), weights(tmp_path / "whole/checkpoints/last")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_nan_loss_names_its_term_and_step_and_applies_nothing(squares, tmp_path):
    with pytest.raises(NonFiniteLoss, match=r"loss term 'pixel' is nan at step 5; the run stopped"):
        run(squares, tmp_path / "nan", "decoder.fail_at_call=5")
    assert json.loads((tmp_path / "nan/checkpoints/last/state.json").read_text())["step"] == 3


def test_resume_refuses_another_config_naming_the_keys(squares, tmp_path):
    run(squares, tmp_path / "r", steps=3)
    with pytest.raises(ConfigError, match=r"cannot resume: .*\(decoder.latent_dim, train.lr\)"):
        run(squares, tmp_path / "r", "decoder.latent_dim=4", "train.lr=0.5", resume=True)
    run(squares, tmp_path / "r", "train.eval_every=2", steps=4, resume=True)  # run-steering keys may differ
    run(squares, tmp_path / "r", "train.eval_every=2", steps=5, resume=True)
    config = json.loads((tmp_path / "r/config.json").read_text())
    assert config["train"]["eval_every"] == 2 and config["resumes"] == [  # each resume: where, and what changed
        {"step": 3, "changed": {"train.eval_every": 2, "train.max_steps": 4}},
        {"step": 4, "changed": {"train.max_steps": 5}}]  # fmt: skip
    with pytest.raises(CheckpointError, match="run directory not found"):
        run(squares, tmp_path / "never", resume=True)
    shutil.rmtree(tmp_path / "r/checkpoints/last")
    before = (tmp_path / "r/config.json").read_text()
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        run(squares, tmp_path / "r", "train.eval_every=2", steps=6, resume=True)
    assert (tmp_path / "r/config.json").read_text() == before  # a refused resume records nothing


def test_resume_accepts_a_run_made_before_a_config_key_existed():
    stored = {"train": {"lr": 1e-4}, "decoder": {"name": "wae3d", "width": 8}}
    resolved = {"train": {"lr": 1e-4, "ema_decay": 0.999}, "decoder": {"name": "wae3d", "width": 8, "new": 1}}
    changed = check_resumable(stored, resolved)  # keys a newer t2vkit added keep their defaults
    assert changed == {"train.ema_decay": 0.999, "decoder.new": 1}  # and are recorded as what the resume changed
    with pytest.raises(ConfigError, match=r"\(decoder.width\)"):
        check_resumable(stored, {**resolved, "decoder": {"name": "wae3d", "width": 9}})


def test_bad_input_is_refused_before_any_work(squares, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(T2VError, match="is a file"):
        run(squares, blocker / "run")
    with pytest.raises(DataError, match="not a prepared t2vkit data set"):
        run(tmp_path, tmp_path / "a")
    with pytest.raises(ConfigError, match=r"decoder.size = 16 conflicts with size = 8, given by the data set"):
        run(squares, tmp_path / "b", "decoder.size=16")
    with pytest.raises(ConfigError, match="decoder tiny-ae: unknown key width"):
        run(squares, tmp_path / "c", "decoder.width=3")
    with pytest.raises(ConfigError, match="stage video has no section 'aligner'"):
        run(squares, tmp_path / "d", "aligner.loss=bucket")
    with pytest.raises(T2VError, match="fewer than one batch"):
        run(squares, tmp_path / "e", "train.batch_size=64")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no run folder was created
    run(squares, tmp_path / "f", steps=1)
    with pytest.raises(T2VError, match="already holds a run; pass --resume"):
        run(squares, tmp_path / "f", steps=1)
