"""diffusion sampler: the space-time UNet, DDIM + CFG + MG sampling against diffusers, training, checkpoints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler

from t2vkit import registry
from t2vkit.checkpoint import load_component, save_component
from t2vkit.config import to_dict
from t2vkit.errors import ConfigError
from t2vkit.interfaces import DenoiserBatch, TextEmbedding
from t2vkit.plugins.samplers.diffusion import (
    DenoiserConfig,
    DenoiserModel,
    DiffusionSampler,
    SamplingConfig,
    drop_captions,
    guided_epsilon,
    mg_guidance,
    trs_loss,
)

DIM = 8  # token width of the tiny tests


def tiny(**overrides: object) -> DenoiserConfig:
    """A ~70k-parameter denoiser of [2, 4, 8, 8] latents: two levels, self-attention at the lower one."""
    config = DenoiserConfig(channels=2, text_dim=DIM, frames=4, size=8, base_channels=16, channel_mult=(1, 2),
                            num_res_blocks=1, attention_levels=(1,), heads=2, mapping_channels=8, max_text_len=8,
                            dc_queue=16)  # fmt: skip
    return dataclasses.replace(config, **overrides)


def build(seed: int = 0, **overrides: object) -> DenoiserModel:
    torch.manual_seed(seed)
    model = DenoiserModel(tiny(**overrides))
    model.set_null_text(torch.randn(1, 2, DIM), torch.ones(1, 2, dtype=torch.bool))
    return model.eval()


def captions(batch: int = 2, length: int = 5, seed: int = 1) -> TextEmbedding:
    """Random token states, right-padded like an encoder's: caption b has length − b real tokens (≥ 1)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, length, DIM, generator=g)
    real = torch.tensor([max(length - b, 1) for b in range(batch)])
    mask = torch.arange(length)[None] < real[:, None]
    return TextEmbedding(pooled=tokens.mean(1), tokens=tokens * mask[..., None], mask=mask)


def reference_ddim(
    model: DenoiserModel, text: TextEmbedding, n: int, seed: int, steps: int, cfg: float
) -> torch.Tensor:
    """DDIM + CFG written directly against diffusers, the conditional and unconditional passes apart."""
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
                              prediction_type=model.config.prediction_type, clip_sample=False,
                              set_alpha_to_one=True, timestep_spacing="trailing")  # fmt: skip
    scheduler.set_timesteps(steps)
    tokens, mask = text.tokens.repeat_interleave(n, 0), text.mask.repeat_interleave(n, 0)
    x = torch.randn((len(tokens), *model.latent_shape), generator=torch.Generator().manual_seed(seed))
    null_tokens, null_mask = model.null_text()
    with torch.no_grad():
        for t in scheduler.timesteps:
            ts = t.repeat(len(x))
            cond = model.unet(x, ts, tokens, mask)
            uncond = model.unet(x, ts, null_tokens.expand(len(x), -1, -1), null_mask.expand(len(x), -1))
            x = scheduler.step(uncond + cfg * (cond - uncond), t, x).prev_sample
    return x


def frame_difference(x: torch.Tensor) -> float:
    return float((x[:, :, 1:] - x[:, :, :-1]).abs().mean())


# --------------------------------------------------------------------------- the UNet


@pytest.mark.parametrize("frames", [16, 8])
@pytest.mark.parametrize("flags", [{}, {"frame_tokens": True}, {"noise_mapping": True},
                                   {"frame_tokens": True, "noise_mapping": True}])  # fmt: skip
def test_unet_shapes(frames: int, flags: dict[str, bool]) -> None:
    model = build(frames=frames, **flags)
    for batch in (1, 3):
        text = captions(batch)
        x = torch.randn(batch, 2, frames, 8, 8)
        out = model(x, torch.randint(0, 1000, (batch,)), text.tokens, text.mask)
        assert out.shape == x.shape and torch.isfinite(out).all()
    pred, aux = model.unet.forward_with_aux(x, torch.full((3,), 500), text.tokens, text.mask)
    assert torch.allclose(pred, model(x, torch.full((3,), 500), text.tokens, text.mask), atol=1e-5)
    assert aux["h"].shape == (3, frames, 32, 4, 4)  # the bottleneck, [B, T, C, h, w]
    assert [a.shape for a in aux["attn"]] == [(3, frames, 2, 16, 16)] * 2  # the decoder's level-1 blocks


@pytest.mark.parametrize("flags", [{}, {"frame_tokens": True}])
def test_padding_does_not_change_the_prediction(flags: dict[str, bool]) -> None:
    model = build(**flags)
    text = captions(2, length=5)
    x, t = torch.randn(2, 2, 4, 8, 8), torch.tensor([10, 900])
    padded = (
        torch.cat([text.tokens, torch.randn(2, 3, DIM)], 1),
        torch.cat([text.mask, torch.zeros(2, 3, dtype=bool)], 1),
    )
    assert torch.allclose(model(x, t, text.tokens, text.mask), model(x, t, *padded), atol=1e-5)


def test_harivo_modules_start_as_the_identity_and_frame_tokens_condition() -> None:
    plain, mapped = build(seed=3), build(seed=3, noise_mapping=True)
    x = torch.randn(1, 2, 4, 8, 8)
    assert torch.equal(mapped.unet.mapping(x), x)  # zero-initialised output layer
    text = captions(1)
    model = build(frame_tokens=True)
    extra = model.unet.token_generator(text.tokens, text.mask)
    assert extra.shape == (1, 4, 3, DIM) and not torch.allclose(extra[:, 0], extra[:, 1])
    assert plain.unet.mapping is None and plain.unet.token_generator is None


def test_unet_refuses_bad_shapes() -> None:
    model = build(frame_tokens=True)
    text = captions(1)
    with pytest.raises(ValueError, match="multiples of 2"):
        model(torch.randn(1, 2, 4, 7, 7), torch.tensor([1]), text.tokens, text.mask)
    with pytest.raises(ValueError, match="tokens for 4 frames"):
        model(torch.randn(1, 2, 8, 8, 8), torch.tensor([1]), text.tokens, text.mask)
    long = captions(1, length=9)
    with pytest.raises(ValueError, match="up to 8 tokens"):
        model(torch.randn(1, 2, 4, 8, 8), torch.tensor([1]), long.tokens, long.mask)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"size": 6, "channel_mult": (1, 2, 2)}, "multiple of 4"),
        ({"heads": 3}, "heads = 3"),
        ({"attention_levels": (2,)}, "level 2 does not exist"),
        ({"prediction_type": "sample"}, "epsilon or v_prediction"),
        ({"lambda_trs": 0.1, "attention_levels": ()}, "spatial self-attention"),
        ({"beta_start": 0.02}, "beta_start < beta_end"),
    ],
)
def test_config_refuses_what_it_cannot_build(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DenoiserModel(tiny(**overrides))


# --------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_sampling_loop_matches_diffusers_ddim(prediction_type: str) -> None:
    """25 steps, CFG 7.5, MG off. A v prediction goes through ε-space in our loop and straight into the
    scheduler in the reference: the same algebra in another float32 order, so it is compared relative
    to the samples' scale (about 7 here; the difference is ~1e-5)."""
    model = build(prediction_type=prediction_type, latent_scale=0.5)
    text = captions(2)
    sampler = DiffusionSampler(SamplingConfig(steps=25, cfg=7.5, mg_alpha=0.0), model)
    ours = sampler.sample(text, n=2, seed=7) * 0.5  # the sampler returns latents / latent_scale
    theirs = reference_ddim(model, text, n=2, seed=7, steps=25, cfg=7.5)
    assert ours.shape == (4, 2, 4, 8, 8)
    scale = 1.0 if prediction_type == "epsilon" else float(theirs.abs().max())
    assert (ours - theirs).abs().max() <= 1e-5 * scale


def test_cfg_scale_one_is_the_conditional_prediction_and_guidance_is_batched() -> None:
    model = build()
    text = captions(2)
    x, t = torch.randn(2, 2, 4, 8, 8), torch.tensor(500)
    ts = torch.full((2,), 500)
    null_tokens, null_mask = model.null_text()
    with torch.no_grad():
        cond = model.unet(x, ts, text.tokens, text.mask)
        uncond = model.unet(x, ts, null_tokens.expand(2, -1, -1), null_mask.expand(2, -1))
        one = guided_epsilon(model.unet, text.tokens, text.mask, null_tokens, null_mask, cfg=1.0)(x, t)
        four = guided_epsilon(model.unet, text.tokens, text.mask, null_tokens, null_mask, cfg=4.0)(x, t)
    assert torch.equal(one, cond)
    assert torch.allclose(four, uncond + 4.0 * (cond - uncond), atol=1e-5)
    assert not torch.allclose(cond, uncond)

    calls = []  # cfg ≠ 1: one UNet call per step, on [∅; c]

    def counting(*args: torch.Tensor) -> torch.Tensor:
        calls.append(args[0].shape[0])
        return model.unet(*args)

    with torch.no_grad():
        guided_epsilon(counting, text.tokens, text.mask, null_tokens, null_mask, cfg=7.5)(x, t)
    assert calls == [4]


def test_mg_leaves_identical_frames_unchanged() -> None:
    still = torch.randn(1, 2, 1, 8, 8).expand(1, 2, 6, 8, 8)
    eps = torch.randn(1, 2, 1, 8, 8).expand(1, 2, 6, 8, 8)
    moving = torch.randn(1, 2, 6, 8, 8)
    x, e = torch.cat([still, moving]), torch.cat([eps, torch.randn(1, 2, 6, 8, 8)])
    out = mg_guidance(x, e, alpha_bar=0.3, mg_alpha=40.0)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], e[0])  # S = 0: the guidance term is exactly zero
    assert not torch.allclose(out[1], e[1])
    assert torch.equal(out[1, :, 0], e[1, :, 0])  # concat(0, G): the first frame is never moved
    two = torch.randn(1, 2, 2, 8, 8)
    assert torch.equal(mg_guidance(two, two, alpha_bar=0.3, mg_alpha=40.0), two)  # F ≤ 2: log(F − 1) ≤ 0


def test_mg_pulls_predicted_frames_together() -> None:
    x, eps, alpha_bar = torch.randn(2, 2, 8, 8, 8), torch.randn(2, 2, 8, 8, 8), 0.5

    def x0(e: torch.Tensor) -> torch.Tensor:
        return (x - (1 - alpha_bar) ** 0.5 * e) / alpha_bar**0.5

    guided = mg_guidance(x, eps, alpha_bar, mg_alpha=5.0)
    assert frame_difference(x0(guided)) < frame_difference(x0(eps))


def test_mg_sampling_smooths_a_random_models_samples() -> None:
    model = build(seed=5, frames=6)
    text = captions(2)
    plain = DiffusionSampler(SamplingConfig(steps=8, cfg=2.0, mg_alpha=0.0), model).sample(text, n=2, seed=3)
    smooth = DiffusionSampler(SamplingConfig(steps=8, cfg=2.0, mg_alpha=40.0), model).sample(text, n=2, seed=3)
    assert torch.isfinite(smooth).all()
    assert frame_difference(smooth) < frame_difference(plain)


def test_seeds_reproduce_and_differ() -> None:
    sampler = DiffusionSampler(SamplingConfig(steps=3, eta=0.5), build())
    text = captions(1)
    a, b, c = (sampler.sample(text, n=2, seed=s) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.allclose(a[0], a[1])  # the n samples of one text differ
    assert not torch.allclose(sampler.sample(text, seed=None), sampler.sample(text, seed=None))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"steps": 0}, "--steps must be between 1 and 1000"),
        ({"steps": 1001}, "--steps must be between 1 and 1000"),
        ({"cfg": -1.0}, "--cfg .* must be ≥ 0"),
        ({"mg_alpha": -2.0}, "--mg-alpha must be ≥ 0"),
    ],
)
def test_bad_sampling_options_get_one_clear_error(options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DiffusionSampler(SamplingConfig(**options), build())


# --------------------------------------------------------------------------- training


def batch_of(model: DenoiserModel, latent: torch.Tensor, text: TextEmbedding) -> DenoiserBatch:
    null_tokens, null_mask = model.null_text()
    return DenoiserBatch(latent=latent, tokens=text.tokens, mask=text.mask, null_tokens=null_tokens,
                         null_mask=null_mask)  # fmt: skip


def test_caption_dropout_pads_and_replaces() -> None:
    text = captions(3, length=2)
    null_tokens, null_mask = torch.ones(1, 4, DIM), torch.tensor([[True, True, True, False]])
    tokens, mask = drop_captions(text.tokens, text.mask, null_tokens, null_mask, torch.tensor([False, True, False]))
    assert tokens.shape == (3, 4, DIM) and mask.tolist()[1] == [True, True, True, False]
    assert torch.equal(tokens[1], null_tokens[0]) and torch.equal(tokens[0, :2], text.tokens[0])
    assert not mask[0, 2:].any() and not tokens[0, 2:].any()


def test_objective_terms_reach_every_harivo_module() -> None:
    model = build(noise_mapping=True, frame_tokens=True, lambda_trs=0.1, lambda_dc=0.1, caption_dropout=0.5).train()
    batch = batch_of(model, torch.randn(3, 2, 4, 8, 8), captions(3))
    terms = model.objective().loss(model, batch)
    assert set(terms) == {"mse", "trs", "dc"} and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    for name in ("unet.mapping.proj_out.weight", "unet.token_generator.mix.weight", "dc_head.layers.2.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert int(model.dc_count) == 6  # this step's positive pairs are the next steps' negatives
    model.eval()
    model.objective().loss(model, batch)
    assert int(model.dc_count) == 6  # validation leaves the queue alone
    identical = torch.softmax(torch.randn(1, 1, 2, 4, 4), -1).expand(1, 5, 2, 4, 4)
    assert float(trs_loss([identical])) == 0.0


def test_tiny_unet_overfits_four_clips() -> None:
    torch.manual_seed(0)
    model = DenoiserModel(tiny(base_channels=16, caption_dropout=0.0)).train()
    model.set_null_text(torch.zeros(1, 1, DIM), torch.ones(1, 1, dtype=torch.bool))
    g = torch.Generator().manual_seed(0)
    clips = torch.randn(4, 2, 1, 8, 8, generator=g).expand(4, 2, 4, 8, 8).contiguous()  # still "videos"
    clips = clips + 0.3 * torch.linspace(-1, 1, 4).view(1, 1, 4, 1, 1)  # ...that brighten over time
    batch = batch_of(model, clips, captions(4))
    objective = model.objective()

    def held_out_loss() -> float:  # the same timesteps and noise each time
        state = torch.random.get_rng_state()
        torch.manual_seed(123)
        with torch.no_grad():
            value = sum(float(objective.loss(model, batch)["mse"]) for _ in range(8)) / 8
        torch.random.set_rng_state(state)
        return value

    before = held_out_loss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(80):
        loss = objective.loss(model, batch)["mse"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = held_out_loss()
    assert after * 3 <= before, f"loss {before:.3f} → {after:.3f}"


# --------------------------------------------------------------------------- checkpoints and registry


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = build(noise_mapping=True, frame_tokens=True, lambda_dc=0.1).train()
    model.objective().loss(model, batch_of(model, torch.randn(2, 2, 4, 8, 8), captions(2)))  # fills the queue
    model.eval()
    save_component(tmp_path, "denoiser", model)
    section = json.loads(json.dumps({"name": "diffusion", **to_dict(model.config)}))  # as config.json holds it
    loaded = load_component(tmp_path, "denoiser", DiffusionSampler.build_model(section)).eval()
    assert loaded.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert all(torch.equal(a, b) for a, b in zip(model.null_text(), loaded.null_text(), strict=True))
    text = captions(2)
    x, t = torch.randn(2, 2, 4, 8, 8), torch.tensor([3, 700])
    assert torch.equal(model(x, t, text.tokens, text.mask), loaded(x, t, text.tokens, text.mask))
    options = SamplingConfig(steps=4)
    assert torch.equal(DiffusionSampler(options, model).sample(text, seed=0),
                       DiffusionSampler(options, loaded).sample(text, seed=0))  # fmt: skip


def test_registered_with_its_model() -> None:
    factory = registry.get("sampler", "diffusion").factory
    assert factory is DiffusionSampler and factory.Model is DenoiserModel
    assert (factory.stage, factory.model_section) == ("diffusion", "denoiser")
    with pytest.raises(ConfigError, match="unknown key"):
        factory.build_model({"name": "diffusion", "channls": 4})
