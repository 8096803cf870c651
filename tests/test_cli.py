"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# The installed console script, as a user runs it.
T2VKIT = str(Path(sys.executable).parent / "t2vkit")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([T2VKIT, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)  # fmt: skip


def test_errors_are_one_line_without_traceback_and_debug_shows_it(tmp_path):
    result = run("data", "prepare", "no-such-dataset", "--out", str(tmp_path / "x"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown dataset 'no-such-dataset'; available datasets:")
    assert "syncdraw-mm" in lines[0]
    debug = run("--debug", "data", "prepare", "no-such-dataset", "--out", str(tmp_path / "x"))
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_every_command_has_help_with_examples():
    for args in (["plugins"], ["data", "prepare"], ["data", "info"]):
        result = run(*args, "--help")
        assert result.returncode == 0, result.stderr
        assert "Example" in result.stdout


def test_prepare_and_info_through_the_cli(tmp_path, mnist_dir):
    out = tmp_path / "sd"
    args = ["data", "prepare", "syncdraw-mm", "--mnist", str(mnist_dir), "--out", str(out),
            "--num-train", "8", "--num-val", "2", "--num-test", "2", "--seed", "1"]  # fmt: skip
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert "prepared" in result.stdout and "train 8, val 2, test 2" in result.stdout
    again = run(*args)
    assert "nothing to do" in again.stdout
    refused = run(*args[:-1], "2")
    assert refused.returncode == 1 and "pass --overwrite" in refused.stderr
    info = run("data", "info", str(out))
    assert info.returncode == 0 and "syncdraw-mm" in info.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["options"]["seed"] == 1 and meta["sources"]["train-images"]["sha256"].startswith("440fcabf")


def test_mnist_from_the_environment_variable(tmp_path, mnist_dir):
    out = tmp_path / "env"
    result = run("data", "prepare", "syncdraw-mm", "--out", str(out), "--num-train", "2", "--num-val", "0",
                 "--num-test", "0", env={"T2VKIT_MNIST": str(mnist_dir)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    missing = run("data", "prepare", "syncdraw-mm", "--out", str(tmp_path / "none"), env={"T2VKIT_MNIST": ""})
    assert missing.returncode == 1 and "pass --mnist DIR or set T2VKIT_MNIST" in missing.stderr


def test_generate_names_one_file_per_video_without_clashes():
    from t2vkit.cli.generate_cmd import output_paths

    def names(out, prompts, num):
        return [str(p) for p in output_paths(Path(out) if out else None, prompts, num)]

    assert names("v/d.mp4", ["a"], 1) == ["v/d.mp4"]
    assert names("d.mp4", ["a"], 2) == ["d-01.mp4", "d-02.mp4"]
    assert names("d.mp4", ["a", "b"], 1) == ["d-01.mp4", "d-02.mp4"]
    assert names("d.mp4", ["a", "b"], 2) == ["d-01-01.mp4", "d-01-02.mp4", "d-02-01.mp4", "d-02-02.mp4"]
    assert names(None, ["Digit 3, moving!"], 1) == ["digit-3-moving.mp4"]
    assert names(None, ["same", "same"], 1) == ["same-01.mp4", "same-02.mp4"]
