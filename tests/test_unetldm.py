"""unetldm: the 3D LDM autoencoder (shapes, paper size, bad clips, its objective, checkpoints)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from t2vkit import registry
from t2vkit.checkpoint import load_component, save_component
from t2vkit.config import load_preset, plugin_section
from t2vkit.errors import ConfigError, DataError
from t2vkit.models.objectives import WAEObjective
from t2vkit.plugins.decoders.unetldm import UNetLDM, UNetLDMConfig

PAPER_PARAMS = 268.8e6  # Table A.2


def tiny(**overrides: object) -> UNetLDMConfig:
    """A few-thousand-parameter net: 16×16 frames, three levels, downsampling ×4 in space, ×2 in time."""
    config = UNetLDMConfig(
        channels=1,
        frames=8,
        size=16,
        base_channels=8,
        channel_mult=(1, 2, 2),
        num_res_blocks=1,
        spatial_downsample=(True, True),
        temporal_downsample=(True, False),
        z_channels=4,
        latent_dim=16,
    )
    return dataclasses.replace(config, **overrides)


@pytest.mark.parametrize("latent", ["vector", "spatial"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("frames", [16, 8])
def test_encode_decode_shapes(latent: str, channels: int, frames: int) -> None:
    torch.manual_seed(0)
    model = UNetLDM(tiny(latent=latent, channels=channels, frames=frames))
    expected = (16,) if latent == "vector" else (4, frames // 2, 4, 4)
    assert model.latent_shape == expected
    for batch in (1, 3):
        video = torch.rand(batch, channels, frames, 16, 16) * 2 - 1
        z = model.encode(video)
        assert z.shape == (batch, *expected)
        assert model.decode(z).shape == video.shape


def test_transposed_upsampling_and_no_attention_shapes() -> None:
    model = UNetLDM(tiny(upsample="transposed", attention=False, temporal_downsample=(True, True), frames=16))
    video = torch.zeros(2, 1, 16, 16, 16)
    assert model.decode(model.encode(video)).shape == video.shape


@pytest.mark.parametrize("latent", ["vector", "spatial"])
def test_paper_size_parameter_count(latent: str) -> None:
    with torch.device("meta"):  # no memory, no initialisation: only the shapes
        model = UNetLDM(UNetLDMConfig(latent=latent))
    count = sum(p.numel() for p in model.parameters())
    assert abs(count / PAPER_PARAMS - 1) <= 0.15, f"{count / 1e6:.1f}M parameters"
    assert model.latent_shape == ((128,) if latent == "vector" else (4, 4, 16, 16))


def test_paper_preset_builds_it_through_the_registry() -> None:
    section = plugin_section(load_preset("paper"), "decoder", "unetldm")
    with torch.device("meta"):
        model = registry.create("decoder", "unetldm", {**section, "temporal_downsample": [True, False, False]})
    assert isinstance(model, UNetLDM) and model.latent_shape == (128,)
    assert model.config.lambda_pixel == 10.0 and model.config.temporal_factor == 2


@pytest.mark.parametrize(
    "overrides",
    [
        {"frames": 7},  # the tiny net halves T once
        {"size": 18},  # ...and H, W twice
        {"frames": 10, "temporal_downsample": (True, True)},  # ×4 in time
        {"spatial_downsample": (True,)},
        {"latent": "tokens"},
        {"channel_mult": (), "spatial_downsample": (), "temporal_downsample": ()},
        {"base_channels": 0},
        {"lambda_pixel": -1.0},
    ],
)
def test_bad_config_is_a_config_error(overrides: dict) -> None:
    with pytest.raises(ConfigError):
        UNetLDM(tiny(**overrides))


def test_paper_size_refuses_a_clip_it_cannot_take() -> None:
    with pytest.raises(ConfigError, match="multiple of 4"):
        UNetLDM(UNetLDMConfig(frames=10))


def test_wrong_video_or_latent_shape_is_a_clear_error() -> None:
    model = UNetLDM(tiny())
    with pytest.raises(DataError, match="expects videos"):
        model.encode(torch.zeros(1, 3, 8, 16, 16))
    with pytest.raises(DataError, match="expects latents"):
        model.decode(torch.zeros(1, 8))


def test_objective_trains_the_model() -> None:
    torch.manual_seed(0)
    model = UNetLDM(tiny(use_disc_v=False, disc_z_hidden=(32, 32), lambda_perceptual=0.0))
    objective = model.objective()
    assert isinstance(objective, WAEObjective)
    video = torch.rand(4, 1, 8, 16, 16) * 2 - 1

    def recon_l1() -> float:
        with torch.no_grad():
            return (model(video) - video).abs().mean().item()

    before = recon_l1()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(8):
        out = objective.forward(model, video)
        loss = sum(objective.autoencoder_loss(video, out).values())
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            assert all(p.grad is not None for p in model.parameters())
        optimizer.step()
    assert recon_l1() < 0.95 * before


@pytest.mark.parametrize("latent", ["vector", "spatial"])
def test_objective_terms_with_both_discriminators(latent: str) -> None:
    torch.manual_seed(0)
    config = tiny(latent=latent, disc_z_hidden=(32,), disc_v_width=4, disc_v_layers=2, disc_v_scales=2)
    model = UNetLDM(dataclasses.replace(config, lambda_perceptual=0.0))
    objective = model.objective()
    assert set(objective.auxiliaries()) == {"disc_z", "disc_v"}
    video = torch.rand(2, 1, 8, 16, 16) * 2 - 1
    out = objective.forward(model, video)
    terms = objective.autoencoder_loss(video, out)
    assert set(terms) == {"pixel", "feat_v", "adv_v", "fm_z"}
    aux = objective.auxiliary_loss(video, {k: v.detach() for k, v in out.items()})
    assert all(torch.isfinite(t) for t in [*terms.values(), *aux.values()])


@pytest.mark.parametrize("latent", ["vector", "spatial"])
def test_save_load_gives_identical_outputs(tmp_path, latent: str) -> None:
    torch.manual_seed(0)
    model = UNetLDM(tiny(latent=latent)).eval()
    save_component(tmp_path, "decoder", model)
    torch.manual_seed(1)
    loaded = load_component(tmp_path, "decoder", UNetLDM(tiny(latent=latent))).eval()
    video = torch.rand(2, 1, 8, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.encode(video), loaded.encode(video))
        assert torch.equal(model(video), loaded(video))


def test_encode_is_deterministic_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = UNetLDM(tiny(dropout=0.5))
    video = torch.rand(2, 1, 8, 16, 16) * 2 - 1
    with torch.no_grad():
        assert not torch.equal(model.encode(video), model.encode(video))  # dropout is live in training
        model.eval()
        assert torch.equal(model.encode(video), model.encode(video))
