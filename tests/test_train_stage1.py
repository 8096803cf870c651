"""Stage 1 as a user runs it: `t2vkit train --stage video` with the built-in decoders, torchrun, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from t2vkit.data.prepare import prepare
from t2vkit.runs import load_decoder

BIN = Path(sys.executable).parent
TINY = [  # a few-thousand-parameter wae3d and discriminators, batches of 4, no workers
    "--set", "decoder.width=4", "--set", "decoder.mults=[1, 2]", "--set", "decoder.disc_v_width=4",
    "--set", "decoder.disc_v_scales=1", "--set", "decoder.disc_z_hidden=[16]", "--set", "train.batch_size=4",
    "--set", "train.num_workers=0", "--set", "train.eval_every=2", "--set", "train.val_clips=4",
]  # fmt: skip


@pytest.fixture(scope="module")
def syncdraw(mnist_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sd") / "syncdraw"
    prepare("syncdraw-mm", out, {"mnist": mnist_dir, "num_train": 16, "num_val": 4, "num_test": 4})
    return out


def cli(*args: str, cwd: Path | None = None, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [*(launcher or [str(BIN / "t2vkit")]), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.mark.parametrize("decoder", ["wae3d", "vae"])
def test_train_from_the_command_line_then_load_the_decoder(syncdraw, tmp_path, decoder):
    out = tmp_path / "run"
    result = cli("train", "--stage", "video", "--dataset", str(syncdraw), "--decoder", decoder,
                 "--max-steps", "4", "--out", str(out), "--device", "cpu", *TINY)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "trained 4/4 steps" in result.stdout and "best validation" in result.stdout
    assert "warning: the perceptual term (λ_p) is skipped" in result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["notes"] == ["perceptual: skipped (no vgg19 weights)"]
    assert config["decoder"]["name"] == decoder and config["decoder"]["width"] == 4

    model, _ = load_decoder(out)
    clips = torch.rand(2, 1, 16, 64, 64) * 2 - 1
    with torch.no_grad():
        first, second = model.decode(model.encode(clips)), load_decoder(out)[0].decode(model.encode(clips))
    assert first.shape == clips.shape and torch.equal(first, second)  # save → load → identical outputs


def test_two_process_data_parallel_run_with_torchrun(syncdraw, tmp_path):
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "t2vkit"]
    result = cli("train", "--stage", "video", "--dataset", str(syncdraw), "--decoder", "wae3d", "--max-steps", "3",
                 "--out", str(out), "--device", "cpu", "--set", "train.log_every=1", *TINY,
                 cwd=tmp_path, launcher=launcher)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("trained 3/3 steps") == 1  # rank 0 reports, rank 1 stays quiet
    state = json.loads((out / "checkpoints/last/state.json").read_text())
    assert state["step"] == 3
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train" in r] == [1, 2, 3]  # one writer
    # 2 processes × 4 clips: each step consumed a global batch of 8 clips of the 16 training clips
    assert records[0]["train"] and load_decoder(out)[0] is not None


def test_resume_from_the_command_line_and_an_unknown_stage(syncdraw, tmp_path):
    out = tmp_path / "r"
    args = ["train", "--stage", "video", "--dataset", str(syncdraw), "--decoder", "wae3d", "--out", str(out),
            "--device", "cpu", *TINY]  # fmt: skip
    assert cli(*args, "--max-steps", "2").returncode == 0
    resumed = cli(*args, "--max-steps", "4", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "checkpoints/last/state.json").read_text())["step"] == 4
    refused = cli(*args, "--max-steps", "6", "--resume", "--set", "decoder.latent_dim=8")
    assert refused.returncode == 1 and "cannot resume" in refused.stderr and "decoder.latent_dim" in refused.stderr
    unknown = cli("train", "--stage", "sideways", "--dataset", str(syncdraw), "--out", str(tmp_path / "a"))
    assert unknown.returncode == 1 and "unknown stage 'sideways'; stages: video, align, diffusion" in unknown.stderr
