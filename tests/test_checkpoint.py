from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from t2vkit import __version__
from t2vkit.checkpoint import (
    RUN_FORMAT_VERSION,
    load_component,
    read_config,
    save_component,
    write_config,
)
from t2vkit.errors import CheckpointError


def _model(width: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, width), nn.LayerNorm(width), nn.Linear(width, 2))


def test_save_then_load_gives_identical_outputs(tmp_path):
    model = _model()
    save_component(tmp_path, "mapping", model)
    fresh = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    load_component(tmp_path, "mapping", fresh)
    x = torch.randn(5, 3)
    assert torch.equal(model(x), fresh(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mapping.safetensors"]  # no temporary left behind


def test_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path):
    save_component(tmp_path, "mapping", _model(width=4))
    with pytest.raises(CheckpointError, match=r"'0.weight' has shape \(4, 3\), the model expects \(8, 3\)"):
        load_component(tmp_path, "mapping", _model(width=8))


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    save_component(tmp_path, "m", nn.Linear(3, 4, bias=False))
    with pytest.raises(CheckpointError, match="tensor 'bias' is missing"):
        load_component(tmp_path, "m", nn.Linear(3, 4))
    save_component(tmp_path, "m", nn.Linear(3, 4))
    with pytest.raises(CheckpointError, match="unexpected tensor 'bias'"):
        load_component(tmp_path, "m", nn.Linear(3, 4, bias=False))


def test_corrupt_and_missing_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_component(tmp_path, "decoder", nn.Linear(1, 1))
    (tmp_path / "decoder.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_component(tmp_path, "decoder", nn.Linear(1, 1))


def test_config_is_stamped_and_checked(tmp_path):
    write_config(tmp_path, {"stage": "video", "decoder": {"name": "wae3d"}})
    config = read_config(tmp_path)
    assert config["format_version"] == RUN_FORMAT_VERSION and config["t2vkit_version"] == __version__
    assert config["decoder"] == {"name": "wae3d"}

    config["format_version"] = RUN_FORMAT_VERSION + 1
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="upgrade t2vkit"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json is corrupt"):
        read_config(tmp_path)
    with pytest.raises(CheckpointError, match="run directory not found"):
        read_config(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a t2vkit run directory"):
        read_config(tmp_path / "empty")


def test_written_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    save_component(tmp_path, "m", nn.Linear(2, 2))
    mode = stat.S_IMODE(os.stat(tmp_path / "m.safetensors").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not the 0600 of a temporary file


def test_a_json_file_of_binary_garbage_is_one_clear_error(tmp_path):
    from t2vkit.errors import DataError
    from t2vkit.fsutil import read_json

    (tmp_path / "meta.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match=r"meta\.json is corrupt \(.*\); make it again"):
        read_json(tmp_path / "meta.json", DataError, "; make it again")
