"""The README's KTH path, command for command, through the installed `t2vkit` script: prepare KTH from
KTH-format files, train stage 1 (wae3d) and stage 2 (progressive), export to ONNX, generate
"person 2 is walking left to right" with PyTorch and with ONNX Runtime.

The KTH videos are not bundled, so the files are synthetic: a bright block crossing a dark frame,
written as ``personNN_ACTION_dS_uncomp.avi`` beside a ``00sequences.txt`` whose header splits the
persons as the official one does (person 2 is a test person there too). The commands are read from
the README's KTH block and run as written, in a folder holding ``kth/`` where the README says to
unpack the official files, with tiny options appended (8 frames of 32×32, tiny networks, 2-3 steps)
so the whole path takes well under a minute on a CPU."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import COMMON, REPO, STAGE1, TINY_ALIGNER
from kth_synthetic import blob_video, write_avi
from PIL import Image

from t2vkit.data import PreparedDataset
from t2vkit.video_io import read_video

T2VKIT = str(Path(sys.executable).parent / "t2vkit")
PROMPT = "person 2 is walking left to right"
FRAMES, SIZE = 8, 32

# The official header's split, for the persons used here: 11-12 train, 01 validation, 02 test.
SEQUENCES = (
    "Training:   person11, 12, 13, 14, 15, 16, 17, 18\r\n"
    "Validation: person19, 20, 21, 23, 24, 25, 01, 04\r\n"
    "Test:       person22, 02, 03, 05, 06, 07, 08, 09, 10\r\n\r\n"
    "person11_walking_d1\t\tframes\t1-40\r\n"
    "person12_running_d2\t\tframes\t1-40\r\n"
    "person01_jogging_d3\t\tframes\t1-40\r\n"
    "person02_walking_d1\t\tframes\t1-40\r\n"
)
RIGHT = [2 + 1.5 * t for t in range(40)]
LEFT = RIGHT[::-1]
VIDEOS = {"walking/person11_walking_d1": RIGHT, "running/person12_running_d2": LEFT,
          "jogging/person01_jogging_d3": RIGHT, "walking/person02_walking_d1": RIGHT}  # fmt: skip


def _sets(*overrides: str) -> tuple[str, ...]:
    return tuple(arg for value in overrides for arg in ("--set", value))


# Appended to the README's commands, by kind: the tiny sizes (the README's own options stay as written).
TINY = {
    "prepare": ("-o", f"frames={FRAMES}", "-o", f"size={SIZE}", "--stride", "8"),
    "video": (*_sets(*STAGE1, *COMMON, "train.max_steps=2"), "--device", "cpu"),
    "align": (*_sets(*TINY_ALIGNER, *COMMON, "train.max_steps=3"), "--device", "cpu"),
    "export": (),
    "generate": ("--seed", "0", "--sheet"),
}


def readme_kth_commands() -> list[list[str]]:
    """The t2vkit commands of the README's KTH block (the bash block of "### KTH and TACoS" that
    prepares kth), as argument lists without the leading ``t2vkit``."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### KTH and TACoS", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    block = next(b for b in blocks if "t2vkit data prepare kth" in b)
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [words[1:] for words in lines if words and words[0] == "t2vkit"]


def kind(args: list[str]) -> str:
    """prepare, video, align, export or generate."""
    if args[0] == "train":
        return args[args.index("--stage") + 1]
    return "prepare" if args[:2] == ["data", "prepare"] else args[0]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([T2VKIT, *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``kth/`` as the README unpacks it: per-action folders and the sequences file."""
    root = tmp_path_factory.mktemp("kth-e2e")
    (root / "kth").mkdir()
    (root / "kth" / "00sequences.txt").write_bytes(SEQUENCES.encode())
    for name, xs in VIDEOS.items():
        (root / "kth" / name).parent.mkdir(exist_ok=True)
        write_avi(root / "kth" / f"{name}_uncomp.avi", blob_video(xs, noise=4))
    return root


@pytest.fixture(scope="module")
def walkthrough(workdir: Path) -> dict[str, subprocess.CompletedProcess]:
    """Every README command, run in order; each must succeed before the next runs."""
    commands = readme_kth_commands()
    assert [kind(args) for args in commands] == ["prepare", "video", "align", "export", "generate", "generate"]
    results = {}
    for args in commands:
        result = cli(*args, *TINY[kind(args)], cwd=workdir)
        assert result.returncode == 0, f"t2vkit {shlex.join(args)}\n{result.stderr}"
        results[shlex.join(args)] = result
    return results


def _dataset(workdir: Path) -> PreparedDataset:
    return PreparedDataset(workdir / "data" / "kth")


def test_the_readme_commands_prepare_train_export_and_generate(walkthrough, workdir):
    data = _dataset(workdir)
    assert data.clip_shape == (FRAMES, SIZE, SIZE, 1)
    assert sorted(data.buckets) == ["person 1 is jogging left to right", "person 11 is walking left to right",
                                    "person 12 is running right to left", PROMPT]  # fmt: skip
    assert {r.split for r in data.records if r.caption == PROMPT} == {"test"}  # person 2 is a test person in KTH
    assert (workdir / "runs" / "kth" / "onnx" / "manifest.json").is_file()
    written = {"onnx" if "--backend onnx" in command else "torch": workdir / result.stdout.split()[0]
               for command, result in walkthrough.items() if command.startswith("generate")}  # fmt: skip
    torch_mp4, onnx_mp4 = written["torch"], written["onnx"]
    for mp4 in (torch_mp4, onnx_mp4):
        assert read_video(mp4).shape == (FRAMES, SIZE, SIZE, 3)  # grey clips, written as RGB mp4
    # The contact sheets are lossless PNGs of every frame: torch and ONNX Runtime within 1 level.
    torch_sheet, onnx_sheet = (np.asarray(Image.open(p.with_name(f"{p.stem}-sheet.png")), int)
                               for p in (torch_mp4, onnx_mp4))  # fmt: skip
    assert torch_sheet.shape == onnx_sheet.shape == (SIZE + 4, FRAMES * (SIZE + 2) + 2, 3)
    assert np.abs(torch_sheet - onnx_sheet).max() <= 1


def test_another_caption_of_the_data_set_is_accepted(walkthrough, workdir):
    """A training caption (the README's prompt is a test person's); ONNX Runtime, the quicker backend to start."""
    result = cli("generate", "person 12 is running right to left", "--model", "runs/kth", "--backend", "onnx",
                 "--out", "run.mp4", cwd=workdir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert read_video(workdir / "run.mp4").shape == (FRAMES, SIZE, SIZE, 3)


def test_the_readme_captions_are_what_the_data_set_writes(walkthrough, workdir):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    kth_row = next(line for line in readme.splitlines() if line.startswith("| `kth` |"))
    assert f'"{PROMPT}"' in kth_row
    prompts = {args[1] for args in readme_kth_commands() if args[0] == "generate"}
    assert prompts == {PROMPT} and PROMPT in _dataset(workdir).buckets
