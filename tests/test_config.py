from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from t2vkit.config import (
    differences,
    from_dict,
    load_preset,
    load_toml,
    merge,
    parse_overrides,
    plugin_section,
    to_dict,
)
from t2vkit.errors import ConfigError


@dataclass
class Inner:
    width: int = 8


@dataclass
class Example:
    lr: float = 1e-4
    steps: int = 10
    name: str = "x"
    path: Path | None = None
    mode: Literal["bucket", "infonce"] = "bucket"
    sizes: tuple[int, ...] = (1, 2)
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_from_dict_coerces_to_field_types():
    cfg = from_dict(Example, {"lr": 1, "steps": 3.0, "path": "/tmp/x", "sizes": [4, 5], "inner": {"width": 2}})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.steps == 3 and isinstance(cfg.steps, int)
    assert cfg.path == Path("/tmp/x")
    assert cfg.sizes == (4, 5)
    assert cfg.inner == Inner(width=2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"lrr": 1}, "unknown key lrr (known: flag, inner, lr, mode, name, path, sizes, steps)"),
        ({"steps": 2.5}, "example.steps: expected an integer, got 2.5"),
        ({"flag": 1}, "example.flag: expected true or false"),
        ({"mode": "mse"}, "example.mode: 'mse' is not one of 'bucket', 'infonce'"),
        ({"inner": {"height": 1}}, "example.inner: unknown key height"),
        ({"sizes": 3}, "example.sizes: expected a list"),
    ],
)
def test_from_dict_rejects_bad_input_naming_the_key(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_dict(Example, data, where="example")


def test_to_dict_round_trips():
    cfg = Example(path=Path("/a"), sizes=(3,))
    data = to_dict(cfg)
    assert data["path"] == "/a" and data["sizes"] == [3] and data["inner"] == {"width": 8}
    assert from_dict(Example, data) == cfg


def test_parse_overrides_reads_toml_literals_and_falls_back_to_strings():
    out = parse_overrides(["train.lr=3e-4", "train.epochs=2", "aligner.loss=bucket", "x.flag=true", "x.l=[1, 2]"])
    assert out == {"train": {"lr": 3e-4, "epochs": 2}, "aligner": {"loss": "bucket"}, "x": {"flag": True, "l": [1, 2]}}


@pytest.mark.parametrize("bad", ["train.lr", "=3", "train..lr=1"])
def test_parse_overrides_rejects_malformed_items(bad):
    with pytest.raises(ConfigError, match="--set expects key=value"):
        parse_overrides([bad])


def test_merge_and_differences():
    base = {"train": {"lr": 1.0, "epochs": 3}, "name": "a"}
    merged = merge(base, {"train": {"lr": 2.0}})
    assert merged == {"train": {"lr": 2.0, "epochs": 3}, "name": "a"}
    assert base["train"]["lr"] == 1.0  # the input is not modified
    assert differences(base, merged) == ["train.lr"]
    assert differences(base, {**base, "extra": 1}) == ["extra"]


def test_presets_carry_the_papers_hyperparameters():
    paper = load_preset("paper")
    assert paper["train"]["video"]["lr"] == 1e-4 and paper["train"]["video"]["grad_clip"] == 5.0
    assert paper["train"]["align"]["grad_clip"] == 4.0
    wae = plugin_section(paper, "decoder", "wae3d")
    assert (wae["latent_dim"], wae["lambda_pixel"], wae["lambda_feat"], wae["lambda_z"]) == (64, 10.0, 10.0, 5.0)
    assert wae["lambda_perceptual"] == 0.0025
    prog = plugin_section(paper, "aligner", "progressive")
    assert (prog["lambda_zs"], prog["lambda_s"], prog["lambda_feat"], prog["lambda_pixel"]) == (5.0, 100.0, 10.0, 30.0)
    assert (prog["lambda_neg"], prog["lambda_pos"], prog["alpha"], prog["noise_word_p"]) == (1.0, 1.0, 2.0, 0.15)
    quick = load_preset("quick")
    assert quick["encoder"]["name"] == "minilm"
    assert quick["train"]["video"]["batch_size"] < paper["train"]["video"]["batch_size"]
    assert plugin_section(quick, "decoder", "nothing-here") == {}


def test_unknown_preset_and_bad_toml_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'fast'; shipped presets: paper, quick"):
        load_preset("fast")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_toml(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_preset(str(tmp_path / "missing.toml"))
