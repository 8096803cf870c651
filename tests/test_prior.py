"""The prior sampler: diffusion over a stage-1 latent vector, trained and drawn as a user does it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from t2vkit.errors import ConfigError, T2VError
from t2vkit.interfaces import DenoiserBatch, TextEmbedding
from t2vkit.pipeline import Pipeline
from t2vkit.plugins.samplers.prior import PriorConfig, PriorModel, PriorSampler, PriorSamplingConfig
from t2vkit.training.config import Sources
from t2vkit.training.run import TrainRequest, train

TINY_PRIOR = ("denoiser.hidden=32", "denoiser.depth=2", "denoiser.heads=2", "denoiser.max_text_len=16")
COMMON = ("train.batch_size=8", "train.num_workers=0", "train.eval_every=2", "train.val_clips=4")


@pytest.fixture(scope="module")
def prior_run(stage1, tmp_path_factory) -> Path:
    """A tiny prior trained on the session's tiny wae3d run (conftest's ``stage1``)."""
    out = tmp_path_factory.mktemp("prior") / "prior"
    train(TrainRequest(stage="diffusion", dataset=stage1.parent / "syncdraw", out=out, sampler="prior",
                       video=stage1, encoder="minilm", device="cpu",
                       sources=Sources(overrides=(*TINY_PRIOR, *COMMON, "train.max_steps=3"))))  # fmt: skip
    return out


def tiny_model(latent_dim: int = 6, text_dim: int = 8, seed: int = 0) -> PriorModel:
    torch.manual_seed(seed)
    model = PriorModel(PriorConfig(latent_dim=latent_dim, text_dim=text_dim, max_text_len=4, hidden=16, depth=2,
                                   heads=2))  # fmt: skip
    with torch.no_grad():  # the output layers start at zero; move them so the parity checks mean something
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_a_prior_run_records_the_latent_vector_it_denoises(prior_run, stage1):
    config = json.loads((prior_run / "config.json").read_text())
    denoiser = config["denoiser"]
    assert config["stage"] == "diffusion" and denoiser["name"] == "prior"
    assert denoiser["latent_dim"] == 64 and denoiser["text_dim"] == 384 and denoiser["latent_scale"] > 0
    assert config["decoder"]["name"] == "wae3d" and config["video_run"]["path"] == str(stage1)
    assert (prior_run / "decoder.safetensors").read_bytes() == (stage1 / "decoder.safetensors").read_bytes()


def test_generate_draws_different_seeded_videos_per_prompt(prior_run):
    pipeline = Pipeline.from_run(prior_run, options={"steps": 4})
    first = pipeline.videos(["digit 3 is moving up and down"], n=3, seed=2)
    again = pipeline.videos(["digit 3 is moving up and down"], n=3, seed=2)
    assert first.shape == (3, 16, 64, 64, 1) and np.array_equal(first, again)
    latents = pipeline.sampler.sample(pipeline.encoder.encode(["digit 3 is moving up and down"]), n=3, seed=2)
    assert latents.shape == (3, 64) and torch.cdist(latents, latents).triu(1).sum() > 0  # three different draws


def test_a_run_records_its_own_sampling_defaults_and_options_override_them(prior_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(prior_run, copy, ignore=shutil.ignore_patterns("checkpoints", "samples"))
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "sampling": {"cfg": 1.0, "steps": 3}}))
    prompt = ["digit 3 is moving up and down"]
    recorded = Pipeline.from_run(copy)
    assert (recorded.sampler.config.cfg, recorded.sampler.config.steps) == (1.0, 3)
    given = Pipeline.from_run(prior_run, options={"cfg": 1.0, "steps": 3})
    assert np.array_equal(recorded.videos(prompt, seed=4), given.videos(prompt, seed=4))
    assert Pipeline.from_run(copy, options={"cfg": 2.0}).sampler.config.cfg == 2.0


def test_sampling_matches_a_loop_written_against_diffusers():
    model = tiny_model()
    tokens, mask = torch.randn(2, 3, 8), torch.tensor([[True, True, False], [True, True, True]])
    model.set_null_text(torch.randn(1, 2, 8), torch.ones(1, 2, dtype=torch.bool))
    sampler = PriorSampler(PriorSamplingConfig(steps=6, cfg=3.0), model)
    ours = sampler.sample(TextEmbedding(pooled=tokens.mean(1), tokens=tokens, mask=mask), n=1, seed=7)

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
                              clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")  # fmt: skip
    scheduler.set_timesteps(6)
    x = torch.randn((2, 6), generator=torch.Generator().manual_seed(7))
    null_tokens = torch.cat([model.null_tokens[:, :2], torch.zeros(1, 1, 8)], dim=1).expand(2, -1, -1)
    null_mask = torch.tensor([[True, True, False]]).expand(2, -1)
    with torch.no_grad():
        for t in scheduler.timesteps:
            steps = torch.full((2,), int(t))
            uncond, cond = model(x, steps, null_tokens, null_mask), model(x, steps, tokens, mask)
            x = scheduler.step(uncond + 3.0 * (cond - uncond), t, x).prev_sample
    assert torch.allclose(ours, x / model.config.latent_scale, atol=1e-5)


def test_a_tiny_prior_learns_which_caption_owns_which_latent():
    """Two captions, each with its own latent: after training, samples land next to their caption's."""
    torch.manual_seed(0)
    model = PriorModel(PriorConfig(latent_dim=4, text_dim=8, max_text_len=2, hidden=64, depth=2, heads=2,
                                   caption_dropout=0.0, num_train_timesteps=100, beta_end=0.2))  # fmt: skip
    captions = torch.randn(2, 2, 8)
    targets = torch.tensor([[1.5, -1.5, 1.0, 0.0], [-1.0, 1.0, -1.5, 1.5]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    objective = model.objective()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    which = torch.arange(64) % 2
    for _ in range(300):
        batch = DenoiserBatch(latent=targets[which], tokens=captions[which], mask=mask[which],
                              null_tokens=model.null_tokens[:, :2], null_mask=model.null_mask[:, :2])  # fmt: skip
        loss = objective.loss(model, batch)["mse"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sampler = PriorSampler(PriorSamplingConfig(steps=20, cfg=1.0), model.eval())
    drawn = sampler.sample(TextEmbedding(pooled=captions.mean(1), tokens=captions, mask=mask), n=4, seed=0)
    nearest = torch.cdist(drawn, targets).argmin(dim=1)
    assert nearest.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("batch", [1, 3])
def test_the_network_is_a_pure_function_of_its_inputs(batch):
    model = tiny_model()
    x, t = torch.randn(batch, 6), torch.randint(0, 1000, (batch,))
    tokens, mask = torch.randn(batch, 3, 8), torch.ones(batch, 3, dtype=torch.bool)
    with torch.no_grad():
        out = model(x, t, tokens, mask)
        padded = model(x, t, torch.cat([tokens, torch.randn(batch, 2, 8)], 1),
                       torch.cat([mask, torch.zeros(batch, 2, dtype=torch.bool)], 1))  # fmt: skip
    assert out.shape == (batch, 6) and torch.allclose(out, padded, atol=1e-6)  # masked tokens are not read


def test_bad_prior_requests_are_one_clear_error(prior_run, stage1, tmp_path):
    with pytest.raises(ConfigError, match="MG sampling smooths a video's frames"):
        Pipeline.from_run(prior_run, options={"mg_alpha": 40.0})
    with pytest.raises(T2VError, match="use --sampler prior"):
        Pipeline.from_run(prior_run, sampler="diffusion")
    with pytest.raises(ConfigError, match="the prior denoises latent vectors"):
        train(TrainRequest(stage="diffusion", dataset=stage1.parent / "syncdraw", out=tmp_path / "p", sampler="prior",
                           encoder="minilm", device="cpu", sources=Sources(overrides=(*TINY_PRIOR, *COMMON))))
    assert not (tmp_path / "p").exists()
    with pytest.raises(ConfigError, match="heads = 3 does not divide hidden = 32"):
        PriorConfig(hidden=32, heads=3).validate()


def test_the_onnx_export_draws_the_same_videos(prior_run):
    from t2vkit.exporters.onnx_export import export_run
    from t2vkit.exporters.onnx_runtime import OnnxPipeline

    export_run(prior_run, echo=lambda line: None)
    manifest = json.loads((prior_run / "onnx" / "manifest.json").read_text())
    assert manifest["run"]["sampler"] == "prior" and manifest["diffusion"]["sampling"]["mg_alpha"] == 0.0
    prompts = ["digit 3 is moving up and down", "digit 1 is moving left and right"]
    torch_videos = Pipeline.from_run(prior_run, options={"steps": 4}).videos(prompts, n=2, seed=3)
    onnx_videos = OnnxPipeline.from_run(prior_run, options={"steps": 4}, threads=1).videos(prompts, n=2, seed=3)
    assert onnx_videos.shape == torch_videos.shape
    assert np.abs(onnx_videos.astype(int) - torch_videos.astype(int)).max() <= 1


def test_evaluate_draws_with_the_sampler_options_it_is_given(prior_run, stage1):
    from t2vkit.evaluate import evaluate

    dataset = stage1.parent / "syncdraw"
    skip = {"probe", "fvd", "lpips", "dists"}
    report = evaluate(prior_run, dataset, split="val", num_per_prompt=2, latent_run=stage1, skip=skip,
                      sampling={"steps": 3, "cfg": 2.0})  # fmt: skip
    # the report records every option drawn with: the given ones over the sampler's defaults
    assert report.settings["sampling"] == {"steps": 3, "cfg": 2.0, "mg_alpha": 0.0, "eta": 0.0}
    assert report.metrics["diversity"]["mean"] > 0
    with pytest.raises(ConfigError, match="--cfg"):
        evaluate(prior_run, dataset, split="val", skip=skip, sampling={"cfg": -1.0})
