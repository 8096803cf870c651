"""Stage-2 aligners (seed 000, Section 3, 4.2.2, 4.2.3): the losses, the networks' sizes, and short
training runs on tiny synthetic data, driven the way t2vkit.training.align drives them."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from t2vkit.config import load_preset
from t2vkit.interfaces import AlignBatch
from t2vkit.models.alignment import (
    bucket_loss,
    bucket_loss_terms,
    decoupling_cost,
    info_nce,
    normalized_mse,
    similarity,
    vicreg_terms,
)
from t2vkit.models.discriminators import count_parameters
from t2vkit.plugins.aligners.baselines import BYOL, CLIPBased, CoDiBased, Direct, ImageBindBased, VICReg
from t2vkit.plugins.aligners.networks import MLP
from t2vkit.plugins.aligners.progressive import Progressive
from t2vkit.training.config import plugin_config
from t2vkit.training.engine import Update, frozen

ALIGNERS = {
    "progressive": Progressive,
    "clip": CLIPBased,
    "imagebind": ImageBindBased,
    "codi": CoDiBased,
    "direct": Direct,
    "vicreg": VICReg,
    "byol": BYOL,
}
COST = {"shared", "feat_pair", "feat_video", "feat_text", "pixel_video", "pixel_text"}
TERMS = {
    "progressive": COST | {"bucket", "adv_s"},
    "clip": COST | {"infonce"},
    "imagebind": COST | {"infonce"},
    "codi": COST | {"infonce"},
    "direct": {"feat_text", "pixel_text", "bucket"},
    "vicreg": COST | {"vicreg_inv", "vicreg_var", "vicreg_cov"},
    "byol": COST | {"byol_text", "byol_video"},
}
TINY = {"text_dim": 12, "latent_shape": (6,), "hidden": 32, "shared_dim": 8}


def tiny_config(name: str, **over: object) -> object:
    fields = dict(TINY)
    if name == "direct":
        fields.pop("shared_dim")
    if name == "progressive":
        fields["disc_s_hidden"] = (16, 16, 16)
    if name == "byol":
        fields["predictor_hidden"] = 16
    return ALIGNERS[name].Config(**(fields | over))


class FrozenDecoder(nn.Module):
    """A stand-in for the frozen stage-1 G: a fixed random linear map latent → clip [B, 1, 2, 4, 4]."""

    def __init__(self, latent_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.linear = nn.Linear(math.prod(latent_shape), 32).requires_grad_(False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z.flatten(1)).view(-1, 1, 2, 4, 4)


def make_batch(latent_shape: tuple[int, ...] = (6,), n: int = 16, buckets: int = 4, text_dim: int = 12,
               seed: int = 0) -> AlignBatch:  # fmt: skip
    """Captions and clips in ``buckets`` clusters; clip = G(z_v), so the data is consistent."""
    g = torch.Generator().manual_seed(seed)
    bucket = torch.arange(n) % buckets
    text_centres = torch.randn(buckets, text_dim, generator=g)
    latent_centres = torch.randn(buckets, *latent_shape, generator=g)
    text = text_centres[bucket] + 0.1 * torch.randn(n, text_dim, generator=g)
    latent = latent_centres[bucket] + 0.3 * torch.randn(n, *latent_shape, generator=g)
    decoder = FrozenDecoder(latent_shape)
    with torch.no_grad():
        video = decoder(latent)
    text_aug = text + 0.05 * torch.randn(n, text_dim, generator=g)
    return AlignBatch(text=text, text_aug=text_aug, latent=latent, video=video, bucket=bucket, decode=decoder)


def train(aligner: nn.Module, batch: AlignBatch, steps: int, lr: float = 3e-3) -> list[float]:
    """The engine's stage-2 step (t2vkit.training.align.AlignTask.train_step) with its Update: Adam over
    the trainable parameters of each group (as Trainer builds them), global-norm clip 4.0, D_s frozen for
    M's update. (test_byol_targets_move_by_ema_only also covers an optimizer that holds every parameter.)"""
    objective = aligner.objective()
    auxiliaries = objective.auxiliaries()
    groups = {"aligner": [aligner], **({"auxiliary": list(auxiliaries.values())} if auxiliaries else {})}
    params = {name: [p for m in mods for p in m.parameters() if p.requires_grad] for name, mods in groups.items()}
    optimizers = {name: torch.optim.Adam(ps, lr=lr) for name, ps in params.items()}
    update = Update(optimizers, params, grad_clip=4.0, world=1)
    totals = []
    for _ in range(steps):
        out = objective.forward(aligner, batch)
        if auxiliaries:
            update("auxiliary", objective.auxiliary_loss(batch, {k: v.detach() for k, v in out.items()}))
        with frozen(auxiliaries.values()):
            logged = update("aligner", objective.aligner_loss(batch, out))
        objective.after_step()
        totals.append(sum(logged.values()))
    return totals


# --------------------------------------------------------------------------- the losses


def test_bucket_loss_on_a_hand_computed_example() -> None:
    # 3 captions, buckets [0, 0, 1]: B_0 = B_1 = {0, 1} (|B| = 2), B_2 = {2} (|B| = 1)
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    video = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    bucket = torch.tensor([0, 0, 1])
    s = similarity(text, video)  # (cos + 1) / 2
    expected_s = torch.tensor([[1.0, 1.0, 0.5], [0.5, 0.5, 1.0], [0.0, 0.0, 0.5]])
    torch.testing.assert_close(s, expected_s)

    neg, pos = bucket_loss_terms(text, video, bucket, alpha=2.0, lambda_neg=1.5, lambda_pos=0.5)
    # negatives (j ∉ B_i), each divided by |B_i|: i=0: S_02/2; i=1: S_12/2; i=2: (S_20 + S_21)/1
    expected_neg = 1.5 / 3 * (0.5 / 2 + 1.0 / 2 + (0.0 + 0.0) / 1)
    # positives (j ∈ B_i), the direct pair j = i weighted α = 2:
    # i=0: (2·S_00 + S_01)/2 = 1.5; i=1: (S_10 + 2·S_11)/2 = 0.75; i=2: 2·S_22/1 = 1.0
    expected_pos = 0.5 / 3 * (2.0 - (1.5 + 0.75 + 1.0))
    assert neg.item() == pytest.approx(expected_neg)
    assert pos.item() == pytest.approx(expected_pos)
    total = bucket_loss(text, video, bucket, alpha=2.0, lambda_neg=1.5, lambda_pos=0.5)
    assert total.item() == pytest.approx(expected_neg + expected_pos)


def test_bucket_loss_weights_the_own_video_alpha() -> None:
    """Swapping two clips of one bucket moves S between the direct pair and a bucket mate: only α
    tells them apart, so the loss changes by (α − 1)/(N|B|)·ΔS and not at all for α = 1."""
    text = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    video = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    swapped = video[[1, 0, 2]]
    bucket = torch.tensor([0, 0, 1])
    for alpha in (1.0, 2.0, 3.0):
        before = bucket_loss(text, video, bucket, alpha=alpha)
        after = bucket_loss(text, swapped, bucket, alpha=alpha)
        s, s_swapped = similarity(text, video), similarity(text, swapped)
        delta = (s_swapped[0, 0] - s[0, 0]) + (s_swapped[1, 1] - s[1, 1])  # direct pairs of bucket 0
        torch.testing.assert_close(after - before, -(alpha - 1) / (3 * 2) * delta)
    assert delta.abs() > 0.1


def test_bucket_loss_matches_the_equation_loop_by_loop() -> None:
    g = torch.Generator().manual_seed(1)
    n, alpha, lneg, lpos = 7, 2.0, 0.7, 1.3
    text, video = torch.randn(n, 5, generator=g), torch.randn(n, 5, generator=g)
    bucket = torch.tensor([0, 1, 0, 2, 1, 0, 3])
    neg = pos = 0.0
    for i in range(n):
        members = [j for j in range(n) if bucket[j] == bucket[i]]
        for j in range(n):
            s_ij = (F.cosine_similarity(text[i], video[j], dim=0).item() + 1) / 2
            if j in members:
                pos += (alpha if i == j else 1.0) * s_ij / len(members)
            else:
                neg += s_ij / len(members)
    expected = lneg / n * neg + lpos / n * (alpha - pos)
    assert bucket_loss(text, video, bucket, alpha, lneg, lpos).item() == pytest.approx(expected, rel=1e-5)


def test_info_nce_matches_cross_entropy() -> None:
    g = torch.Generator().manual_seed(2)
    text, video = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    scale = torch.tensor(1 / 0.07)
    logits = scale * F.cosine_similarity(text[:, None], video[None], dim=-1)  # [6, 6]
    target = torch.arange(6)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    torch.testing.assert_close(info_nce(text, video, scale), expected)
    # matched pairs and a large scale: nearly zero; the diagonal is the only positive
    assert info_nce(video, video, 100.0).item() < 1e-6


def test_vicreg_terms() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(32, 4, generator=g)
    invariance, _, _ = vicreg_terms(x, x)
    assert invariance.item() == 0.0
    # constant embeddings: the std is sqrt(ε) in every dimension, the variance term at its largest
    constant = torch.ones(32, 4)
    _, variance, covariance = vicreg_terms(constant, constant, gamma=1.0, eps=1e-4)
    assert variance.item() == pytest.approx(1 - math.sqrt(1e-4))
    assert covariance.item() == 0.0
    # two identical columns of variance v: off-diagonal cov v twice, / d = 2 → v² per input
    a = torch.randn(64, 1, generator=g)
    twin = torch.cat([a, a], 1)
    _, _, covariance = vicreg_terms(twin, twin)
    assert covariance.item() == pytest.approx(2 * a.var().item() ** 2, rel=1e-5)
    # std above γ everywhere: no variance penalty
    _, variance, _ = vicreg_terms(10 * x, 10 * x)
    assert variance.item() == 0.0


def test_normalized_mse() -> None:
    z = torch.randn(5, 3)
    assert normalized_mse(2 * z, z).item() == pytest.approx(0.0, abs=1e-6)
    assert normalized_mse(-z, z).item() == pytest.approx(4.0)


def test_decoupling_cost_terms_and_gradients() -> None:
    batch = make_batch()
    z1 = torch.randn(16, 8, requires_grad=True)
    z2 = torch.randn(16, 8, requires_grad=True)
    y1 = torch.randn(16, 6, requires_grad=True)
    y2 = torch.randn(16, 6, requires_grad=True)
    terms = decoupling_cost(z1, z2, y1, y2, batch.latent, batch.video, batch.decode, 100.0, 10.0, 30.0)
    assert set(terms) == COST
    assert terms["shared"].item() == pytest.approx(100 * (z1 - z2).abs().mean().item(), rel=1e-5)
    assert terms["pixel_text"].item() == pytest.approx(30 * (batch.decode(y2) - batch.video).abs().mean().item())
    sum(terms.values()).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (z1, z2, y1, y2))  # through G's input
    assert batch.decode.linear.weight.grad is None  # G stays frozen
    # a zero weight: the term is not computed
    assert set(decoupling_cost(z1, z2, y1, y2, batch.latent, batch.video, batch.decode, 1.0, 1.0, 0.0)) == COST - {
        "pixel_video",
        "pixel_text",
    }


# --------------------------------------------------------------------------- networks and sizes


def test_parameter_counts_at_the_paper_size() -> None:
    """Table A.2: M 824k (d_zt = 512, d_zs = 64), E_s + G_s 1.2M (d_zv = d_zs = 64), D_s 133k; within ±15%."""
    aligner = Progressive(Progressive.Config(text_dim=512, latent_shape=(64,)))
    m = count_parameters(aligner.mapping)
    shared_ae = count_parameters(aligner.shared_encoder) + count_parameters(aligner.shared_decoder)
    d_s = count_parameters(aligner.objective().auxiliaries()["disc_s"])
    assert (m, shared_ae, d_s) == (823_872, 1_188_992, 132_961)
    for count, paper in ((m, 824_000), (shared_ae, 1_200_000), (d_s, 133_000)):
        assert abs(count - paper) / paper < 0.15
    layers = [type(layer).__name__ for layer in MLP(4, 2)]
    assert layers == ["Linear", "LayerNorm", "SiLU"] * 1 + ["Linear", "LayerNorm", "SiLU", "Dropout"] * 2 + ["Linear"]


def test_the_paper_presets_fit_the_configs() -> None:
    """The [aligner.progressive] field names of the presets are the Config's; t2vkit fills text_dim
    and latent_shape."""
    for preset in ("paper", "quick"):
        config = plugin_config(Progressive, "aligner", "progressive", load_preset(preset), {},
                               fixed={"text_dim": 384, "latent_shape": (64,)})  # fmt: skip
        assert config.text_dim == 384 and config.latent_shape == (64,)
    paper = plugin_config(Progressive, "aligner", "progressive", load_preset("paper"), {})
    assert (paper.lambda_zs, paper.lambda_s, paper.lambda_feat, paper.lambda_pixel) == (5.0, 100.0, 10.0, 30.0)
    assert (paper.lambda_neg, paper.lambda_pos, paper.alpha, paper.noise_word_p) == (1.0, 1.0, 2.0, 0.15)
    for name, factory in ALIGNERS.items():  # every aligner tells the engine its noise-word probability
        assert factory.Config().noise_word_p == 0.15, name
    direct = plugin_config(Direct, "aligner", "direct", {}, {"aligner": {"loss": "infonce"}})
    assert direct.loss == "infonce"


@pytest.mark.parametrize("latent_shape", [(6,), (2, 2, 3, 3)])
@pytest.mark.parametrize("name", sorted(ALIGNERS))
def test_shapes(name: str, latent_shape: tuple[int, ...]) -> None:
    aligner = ALIGNERS[name](tiny_config(name, latent_shape=latent_shape)).eval()
    text, latent = torch.randn(3, 12), torch.randn(3, *latent_shape)
    assert aligner.text_to_latent(text).shape == (3, *latent_shape)
    if name == "direct":
        assert aligner.text_to_shared(text) is None and aligner.latent_to_shared(latent) is None
    else:
        assert aligner.text_to_shared(text).shape == (3, 8)
        assert aligner.latent_to_shared(latent).shape == (3, 8)
        torch.testing.assert_close(aligner.text_to_latent(text), aligner.shared_to_latent(aligner.text_to_shared(text)))


def test_imagebind_projects_with_single_linear_layers() -> None:
    aligner = ImageBindBased(tiny_config("imagebind"))
    assert isinstance(aligner.mapping, nn.Linear) and isinstance(aligner.shared_encoder, nn.Linear)
    assert isinstance(aligner.shared_decoder, MLP)


def test_codi_warns_off_the_unetldm_vector_latent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="t2vkit"):
        CoDiBased(tiny_config("codi", latent_shape=(128,)))
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="t2vkit"):
        CoDiBased(tiny_config("codi"))
    assert "unetldm" in caplog.text


# --------------------------------------------------------------------------- objectives and training


@pytest.mark.parametrize("name", sorted(ALIGNERS))
def test_objective_terms_and_auxiliaries(name: str) -> None:
    torch.manual_seed(0)
    aligner = ALIGNERS[name](tiny_config(name))
    objective = aligner.objective()
    batch = make_batch()
    out = objective.forward(aligner, batch)
    assert set(objective.aligner_loss(batch, out)) == TERMS[name]
    auxiliaries = objective.auxiliaries()
    aux_terms = objective.auxiliary_loss(batch, {k: v.detach() for k, v in out.items()})
    if name == "progressive":
        assert set(auxiliaries) == {"disc_s"} and set(aux_terms) == {"disc_s"}
    else:
        assert auxiliaries == {} and aux_terms == {}


def test_direct_with_infonce() -> None:
    aligner = Direct(tiny_config("direct", loss="infonce"))
    objective, batch = aligner.objective(), make_batch()
    terms = objective.aligner_loss(batch, objective.forward(aligner, batch))
    assert set(terms) == {"feat_text", "pixel_text", "infonce"}


def test_progressive_gradients_reach_the_right_networks() -> None:
    """adv_s trains M only (D_s frozen); bucket reaches both M and E_s; nothing reaches D_s or G."""
    torch.manual_seed(0)
    aligner = Progressive(tiny_config("progressive"))
    objective, batch = aligner.objective(), make_batch()
    out = objective.forward(aligner, batch)
    terms = objective.aligner_loss(batch, out)
    terms["adv_s"].backward(retain_graph=True)
    assert all(p.grad is None for p in objective.disc_s.parameters())
    assert all(p.grad is None for p in aligner.shared_encoder.parameters())
    assert aligner.mapping[0].weight.grad.abs().sum() > 0
    aligner.zero_grad()
    terms["bucket"].backward()
    assert aligner.mapping[0].weight.grad.abs().sum() > 0
    assert aligner.shared_encoder[0].weight.grad.abs().sum() > 0
    assert batch.decode.linear.weight.grad is None


@pytest.mark.parametrize("name", sorted(ALIGNERS))
def test_every_aligner_lowers_its_loss(name: str) -> None:
    torch.manual_seed(0)
    aligner = ALIGNERS[name](tiny_config(name))
    totals = train(aligner, make_batch(), steps=30)
    first, last = sum(totals[:5]) / 5, sum(totals[-5:]) / 5
    assert last < first, f"{name}: mean loss {first:.3f} → {last:.3f}"


def test_progressive_separates_two_buckets() -> None:
    """Two buckets whose caption embeddings nearly coincide (a large shared component) and whose clips
    form two clusters: training pulls the buckets' mean shared text codes apart."""
    g = torch.Generator().manual_seed(4)
    n, d_t = 32, 12
    bucket = torch.arange(n) % 2
    common, direction = 4 * torch.randn(d_t, generator=g), torch.randn(d_t, generator=g)
    text = common + torch.where(bucket[:, None] == 0, direction, -direction) + 0.3 * torch.randn(n, d_t, generator=g)
    latent_centres = 2 * torch.randn(2, 6, generator=g)
    latent = latent_centres[bucket] + 0.3 * torch.randn(n, 6, generator=g)
    decoder = FrozenDecoder((6,))
    with torch.no_grad():
        video = decoder(latent)
    batch = AlignBatch(text=text, text_aug=text, latent=latent, video=video, bucket=bucket, decode=decoder)

    torch.manual_seed(0)
    aligner = Progressive(tiny_config("progressive"))

    def bucket_cosine() -> float:
        aligner.eval()
        with torch.no_grad():
            shared = aligner.text_to_shared(text)
        aligner.train()
        return F.cosine_similarity(shared[bucket == 0].mean(0), shared[bucket == 1].mean(0), dim=0).item()

    before = bucket_cosine()
    train(aligner, batch, steps=60)
    after = bucket_cosine()
    # (the cost of Eq. 2 alone, λ_zs = 0, leaves the cosine near 0 on this data: the divergence does the rest)
    assert after < min(before - 0.3, -0.5), f"cosine between the buckets' mean codes {before:.3f} → {after:.3f}"


def test_byol_targets_move_by_ema_only() -> None:
    torch.manual_seed(0)
    aligner = BYOL(tiny_config("byol", momentum=0.9))
    targets = [*aligner.mapping_target.parameters(), *aligner.shared_encoder_target.parameters()]
    online = [*aligner.mapping.parameters(), *aligner.shared_encoder.parameters()]
    assert all(not p.requires_grad for p in targets)
    assert all(torch.equal(t, o) for t, o in zip(targets, online, strict=True))  # BYOL starts from a copy
    state = aligner.state_dict()
    assert any(k.startswith("mapping_target.") for k in state)  # saved with the run
    assert any(k.startswith("shared_encoder_target.") for k in state)

    # the engine's optimizer holds every parameter, targets included: they get no gradient, so no update
    objective, batch = aligner.objective(), make_batch()
    optimizer = torch.optim.Adam(aligner.parameters(), lr=1e-2)
    before = [t.detach().clone() for t in targets]
    sum(objective.aligner_loss(batch, objective.forward(aligner, batch)).values()).backward()
    optimizer.step()
    assert all(t.grad is None for t in targets)
    assert all(torch.equal(t, b) for t, b in zip(targets, before, strict=True))
    assert not all(torch.equal(o, b) for o, b in zip(online, before, strict=True))  # the online networks moved

    objective.after_step()  # target ← 0.9·target + 0.1·online
    for t, b, o in zip(targets, before, online, strict=True):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)
    gap_before = sum((b - o).abs().sum() for b, o in zip(before, online, strict=True))
    gap_after = sum((t - o).abs().sum() for t, o in zip(targets, online, strict=True))
    assert gap_after < gap_before
