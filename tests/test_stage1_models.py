"""Stage-1 video autoencoders (wae3d, vae), their discriminators, the VGG19 loader and the WAE objective.

Everything runs on tiny configs except the parameter-count tests, which only build the paper-size
networks (no forward pass).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from t2vkit.config import from_dict
from t2vkit.errors import CheckpointError, ConfigError, DataError
from t2vkit.models.discriminators import LatentDiscriminator, PatchVideoDiscriminator, count_parameters
from t2vkit.models.objectives import PERCEPTUAL_SKIPPED, WAELosses, WAEObjective, kl_divergence
from t2vkit.models.perceptual import VGG19Features
from t2vkit.plugins.decoders.vae import VAE3D, VAE3DConfig
from t2vkit.plugins.decoders.wae3d import WAE3D, WAE3DConfig

# 4 frames of 16×16, two stages: a 1×4×4 bottom. λ_p = 0 keeps the VGG warning out of unrelated tests.
TINY = dict(
    frames=4, size=16, latent_dim=8, width=4, mults=(1, 2), disc_z_hidden=(16, 16), disc_v_width=4,
    disc_v_scales=2, lambda_perceptual=0.0,
)  # fmt: skip


def tiny(cls: type = WAE3D, **over: object) -> WAE3D:
    config = cls.Config(**{**TINY, **over})
    return cls(config)


def clips(b: int, c: int = 1, t: int = 4, s: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, t, s, s, generator=g) * 2 - 1


def within(count: int, target: float, tolerance: float = 0.15) -> bool:
    return abs(count - target) <= tolerance * target


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("cls", [WAE3D, VAE3D])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("batch", [1, 3])
def test_encode_decode_shapes(cls: type, channels: int, batch: int) -> None:
    torch.manual_seed(0)
    model = tiny(cls, channels=channels)
    video = clips(batch, channels)
    z = model.encode(video)
    assert model.latent_shape == (8,)
    assert z.shape == (batch, 8)
    recon = model.decode(z)
    assert recon.shape == video.shape
    assert recon.abs().max() <= 1.0  # tanh output


@pytest.mark.parametrize("cls", [WAE3D, VAE3D])
def test_encode_is_deterministic(cls: type) -> None:
    torch.manual_seed(0)
    model = tiny(cls).eval()
    video = clips(2)
    assert torch.equal(model.encode(video), model.encode(video))


def test_vae_encodes_to_mu_and_samples_in_training() -> None:
    torch.manual_seed(0)
    model = tiny(VAE3D).eval()
    video = clips(2)
    mu, logvar = model.encode_distribution(video)
    assert mu.shape == logvar.shape == (2, 8)
    assert torch.equal(model.encode(video), mu)
    out = model.objective().forward(model, video)
    assert not torch.allclose(out["z"], out["mu"])  # z = μ + σ·ε


def test_a_clip_shape_the_network_cannot_take_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"multiples of 16 \(frames = 10\)"):
        WAE3D(WAE3DConfig(frames=10))
    with pytest.raises(ConfigError, match=r"multiples of 4 \(size = 18\)"):
        tiny(size=18)
    with pytest.raises(ConfigError, match="latent_dim"):
        tiny(latent_dim=0)
    with pytest.raises(DataError, match=r"\[B, 1, 4, 16, 16\], got \[2, 1, 4, 32, 32\]"):
        tiny().encode(clips(2, s=32))


def test_config_builds_from_toml_values(tmp_path: Path) -> None:
    config = from_dict(
        VAE3DConfig,
        {"latent_dim": 32, "mults": [1, 2], "vgg19": str(tmp_path / "vgg.safetensors"), "use_disc_z": False},
    )
    assert config.mults == (1, 2) and config.vgg19 == tmp_path / "vgg.safetensors" and config.lambda_pixel == 10.0
    with pytest.raises(ConfigError, match="lambda_kl"):
        from_dict(WAE3DConfig, {"lambda_kl": 1.0})


# --------------------------------------------------------------------------- sizes (Table A.2)


def test_parameter_counts_match_table_a2() -> None:
    wae = WAE3D(WAE3DConfig())  # paper defaults: 1 × 16 × 64 × 64, d_z = 64
    vae = VAE3D(VAE3DConfig())
    disc_z = LatentDiscriminator(64)
    disc_v = PatchVideoDiscriminator(1)
    counts = {m: count_parameters(m) for m in (wae, vae, disc_z, disc_v)}
    print({type(m).__name__: n for m, n in counts.items()})
    assert within(counts[wae], 9.9e6)
    assert within(counts[disc_z], 133e3)
    assert within(counts[disc_v], 2.6e6)
    assert counts[vae] == counts[wae] + wae.to_latent.weight.shape[1] * 64 + 64  # the logvar half of the head


def test_paper_objective_builds_the_paper_discriminators() -> None:
    objective = WAEObjective(WAELosses(lambda_perceptual=0.0), channels=1, latent_shape=(64,))
    aux = objective.auxiliaries()
    assert sorted(aux) == ["disc_v", "disc_z"]
    assert within(count_parameters(aux["disc_z"]), 133e3) and within(count_parameters(aux["disc_v"]), 2.6e6)


def test_discriminators_return_logits_and_features() -> None:
    disc_v = PatchVideoDiscriminator(3, width=4, layers=3, scales=3)
    logits, features = disc_v(clips(2, 3))
    assert len(logits) == len(features) == 3
    assert all(lg.shape[:2] == (2, 1) for lg in logits)
    assert all(len(f) == 4 for f in features)  # layers + 1 intermediate maps per scale
    logit, feats = LatentDiscriminator(8, (16, 12))(torch.randn(5, 8))
    assert logit.shape == (5,) and feats.shape == (5, 12)


# --------------------------------------------------------------------------- the objective


def test_terms_and_the_pixel_term() -> None:
    torch.manual_seed(0)
    model = tiny(lambda_pixel=7.0)
    objective = model.objective()
    video = clips(3)
    out = objective.forward(model, video)
    terms = objective.autoencoder_loss(video, out)
    assert sorted(terms) == ["adv_v", "feat_v", "fm_z", "pixel"]
    assert torch.allclose(terms["pixel"], 7.0 * (video - out["recon"]).abs().mean())
    detached = {k: v.detach() for k, v in out.items()}
    assert sorted(objective.auxiliary_loss(video, detached)) == ["disc_v", "disc_z"]
    assert objective.notes == []


def test_the_squared_pixel_loss_and_a_bad_one() -> None:
    torch.manual_seed(0)
    model = tiny(lambda_pixel=7.0, pixel_loss="l2")
    objective = model.objective()
    video = clips(2)
    out = objective.forward(model, video)
    pixel = objective.autoencoder_loss(video, out)["pixel"]
    assert torch.allclose(pixel, 7.0 * (video - out["recon"]).square().mean())
    with pytest.raises(ConfigError, match=r"decoder\.pixel_loss must be l1 or l2, got 'l3'"):
        tiny(pixel_loss="l3").objective()


def test_flags_drop_the_discriminators_and_their_terms() -> None:
    torch.manual_seed(0)
    video = clips(2)
    for over, gone in [
        ({"use_disc_z": False}, {"fm_z", "disc_z"}),
        ({"use_disc_v": False}, {"feat_v", "adv_v", "disc_v"}),
    ]:
        model = tiny(**over)
        objective = model.objective()
        out = objective.forward(model, video)
        names = set(objective.autoencoder_loss(video, out)) | set(objective.auxiliary_loss(video, out))
        assert names == {"pixel", "feat_v", "adv_v", "fm_z", "disc_z", "disc_v"} - gone
        assert not {n for n in gone if n.startswith("disc")} & set(objective.auxiliaries())


def _autoencoder_grads(model: WAE3D, objective: WAEObjective, video: torch.Tensor) -> list[torch.Tensor]:
    torch.manual_seed(1)  # the same prior sample every call
    model.zero_grad(set_to_none=True)
    out = objective.forward(model, video)
    sum(objective.autoencoder_loss(video, out).values()).backward()
    return [p.grad.clone() for p in model.parameters()]


def test_the_autoencoder_gets_no_adversarial_gradient_from_d_z() -> None:
    torch.manual_seed(0)
    model = tiny(use_disc_v=False)
    objective = model.objective()
    disc_z = objective.disc_z
    video = clips(3)
    before = _autoencoder_grads(model, objective, video)
    assert all(p.grad is None for p in disc_z.parameters())  # D_z is not trained by the autoencoder loss

    with torch.no_grad():  # a different D_z logit: the autoencoder's gradient does not change
        disc_z.head.weight.normal_()
        disc_z.head.bias.fill_(3.0)
    after = _autoencoder_grads(model, objective, video)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))

    with torch.no_grad():  # but D_z's features do reach it (the test can see a change)
        disc_z.body[0].weight.normal_()
    changed = _autoencoder_grads(model, objective, video)
    assert not all(torch.allclose(a, b) for a, b in zip(before, changed, strict=True))

    # and the auxiliary loss trains D_z, never the autoencoder
    model.zero_grad(set_to_none=True)
    out = objective.forward(model, video)
    objective.auxiliary_loss(video, out)["disc_z"].backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is not None for p in disc_z.parameters())


def test_d_v_terms_reach_the_autoencoder_but_not_d_v() -> None:
    torch.manual_seed(0)
    model = tiny(use_disc_z=False, lambda_pixel=0.0)
    objective = model.objective()
    video = clips(2)
    terms = objective.autoencoder_loss(video, objective.forward(model, video))
    (terms["feat_v"] + terms["adv_v"]).backward()
    assert all(p.grad is not None for p in model.decoder.parameters())
    assert all(p.grad is None for p in objective.disc_v.parameters())


def test_vae_kl_is_the_closed_form() -> None:
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    for sigma in (1.0, 0.5):
        q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
        p = torch.distributions.Normal(torch.zeros_like(mu), sigma)
        expected = torch.distributions.kl_divergence(q, p).sum(1).mean()
        assert torch.allclose(kl_divergence(mu, logvar, sigma), expected, atol=1e-5)

    torch.manual_seed(0)
    model = tiny(VAE3D, lambda_kl=0.25, use_disc_z=False)
    objective = model.objective()
    video = clips(2)
    out = objective.forward(model, video)
    terms = objective.autoencoder_loss(video, out)
    assert torch.allclose(terms["kl"], 0.25 * kl_divergence(out["mu"], out["logvar"]))
    assert "fm_z" not in terms  # "VAE w/o D_z"
    with_d_z = tiny(VAE3D)  # "VAE" keeps D_z
    objective = with_d_z.objective()
    assert "fm_z" in objective.autoencoder_loss(video, objective.forward(with_d_z, video))


# --------------------------------------------------------------------------- VGG19 perceptual term


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised VGG19 in torchvision's key layout, with a classifier key to ignore."""
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in VGG19Features().features.state_dict().items()}
    state["classifier.0.bias"] = torch.zeros(4096)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.safetensors"
    save_file(state, str(path))
    return path


def test_vgg19_loads_from_safetensors_and_gives_the_two_layers(vgg_file: Path) -> None:
    vgg = VGG19Features.from_safetensors(vgg_file)
    for channels in (1, 3):
        block4, block5 = vgg(clips(2, channels, t=3, s=32))
        assert block4.shape == (6, 512, 4, 4)  # block4_conv3: H/8
        assert block5.shape == (6, 512, 2, 2)  # block5_conv4: H/16
    assert not any(p.requires_grad for p in vgg.parameters())


def t2vkit_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "t2vkit" and r.levelno == logging.WARNING]


@pytest.fixture
def caught(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    """caplog for t2vkit's warnings (the CLI's logging set-up, run by other tests, stops propagation)."""
    monkeypatch.setattr(logging.getLogger("t2vkit"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="t2vkit")
    return caplog


def test_perceptual_term_with_weights(vgg_file: Path, caught: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    model = tiny(lambda_perceptual=0.5, vgg19=vgg_file)
    objective = model.objective()
    assert objective.notes == [] and t2vkit_warnings(caught) == []
    video = clips(2)
    terms = objective.autoencoder_loss(video, objective.forward(model, video))
    assert terms["perceptual"] > 0
    terms["perceptual"].backward()
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_a_wrong_vgg_file_is_one_error_naming_the_key(vgg_file: Path, tmp_path: Path) -> None:
    state = {f"features.{k}": v for k, v in VGG19Features().features.state_dict().items()}
    del state["features.34.weight"]
    missing = tmp_path / "missing.safetensors"
    save_file(state, str(missing))
    with pytest.raises(CheckpointError, match=r"'features\.34\.weight' is missing"):
        VGG19Features.from_safetensors(missing)

    state["features.34.weight"] = torch.zeros(512, 512, 1, 1)
    wrong = tmp_path / "wrong.safetensors"
    save_file(state, str(wrong))
    with pytest.raises(CheckpointError, match=r"'features\.34\.weight' has shape \(512, 512, 1, 1\)"):
        VGG19Features.from_safetensors(wrong)

    garbage = tmp_path / "vgg19.pth"
    garbage.write_bytes(b"PK\x03\x04 not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        VGG19Features.from_safetensors(garbage)
    with pytest.raises(CheckpointError, match="not found"):
        VGG19Features.from_safetensors(tmp_path / "absent.safetensors")


def test_no_vgg_path_skips_the_term_with_one_warning(caught: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    model = tiny(lambda_perceptual=0.0025)
    objective = model.objective()
    video = clips(2)
    terms = objective.autoencoder_loss(video, objective.forward(model, video))
    warnings = t2vkit_warnings(caught)
    assert len(warnings) == 1 and "perceptual" in warnings[0] and "VGG19" in warnings[0]
    assert objective.notes == [PERCEPTUAL_SKIPPED] == ["perceptual: skipped (no vgg19 weights)"]
    assert "perceptual" not in terms


# --------------------------------------------------------------------------- it learns


def moving_squares(n: int = 8, frames: int = 4, size: int = 16, side: int = 5, seed: int = 0) -> torch.Tensor:
    """``n`` grey clips ``[n, 1, T, S, S]`` in [-1, 1]: a white square moving 2 px a frame on black."""
    g = torch.Generator().manual_seed(seed)
    video = -torch.ones(n, 1, frames, size, size)
    steps = [(2, 0), (-2, 0), (0, 2), (0, -2)]
    for i in range(n):
        x, y = torch.randint(0, size - side, (2,), generator=g).tolist()
        dx, dy = steps[i % 4]
        for t in range(frames):
            xt, yt = min(max(x + dx * t, 0), size - side), min(max(y + dy * t, 0), size - side)
            video[i, :, t, yt : yt + side, xt : xt + side] = 1.0
    return video


def test_a_tiny_config_overfits_8_clips() -> None:
    """The full objective (D_z and D_v on, the paper's weights) and a plain Adam loop in the engine's
    order: discriminators first, then the autoencoder with a gradient-norm clip of 5. Adam's β1 = 0.5
    (DCGAN's): with β1 = 0.9 the adversarial term makes this tiny problem oscillate."""
    torch.manual_seed(0)
    model = tiny(latent_dim=16, width=8, disc_z_hidden=(32, 32))
    objective = model.objective()
    aux = [p for net in objective.auxiliaries().values() for p in net.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.5, 0.999))
    opt_aux = torch.optim.Adam(aux, lr=3e-3, betas=(0.5, 0.999))
    video = moving_squares()

    def l1() -> float:
        model.eval()
        with torch.no_grad():
            error = (model(video) - video).abs().mean().item()
        model.train()
        return error

    began, start = time.perf_counter(), l1()
    for _ in range(150):
        out = objective.forward(model, video)
        opt_aux.zero_grad(set_to_none=True)
        sum(objective.auxiliary_loss(video, {k: v.detach() for k, v in out.items()}).values()).backward()
        opt_aux.step()
        opt.zero_grad(set_to_none=True)
        sum(objective.autoencoder_loss(video, out).values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    end = l1()
    print(f"reconstruction L1 {start:.3f} → {end:.4f} ({start / end:.0f}×) in {time.perf_counter() - began:.1f} s")
    assert end * 5 <= start
