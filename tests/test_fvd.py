"""FVD / KVD: the I3D feature network against reference logits, and the two set distances against closed forms.

The I3D forward on one 16×224×224 clip takes seconds on a CPU: it runs twice per session (the two BN eps
settings, module-scoped); every other test uses a stand-in network or checks inputs before the forward.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import _need
from safetensors.torch import save_file
from scipy.linalg import sqrtm

from t2vkit.errors import CheckpointError, DataError
from t2vkit.metrics.distribution import frechet_distance, kernel_distance, sample_size_warning
from t2vkit.metrics.i3d import (
    I3D,
    TF_BN_EPS,
    TORCH_BN_EPS,
    i3d_features,
    load_i3d,
    preprocess,
    resolve_i3d_path,
    same_padding,
)

# --------------------------------------------------------------------------- I3D against the reference logits


@pytest.fixture(scope="module")
def weights() -> str:
    return str(_need("weights/i3d_kinetics400.safetensors"))


@pytest.fixture(scope="module")
def reference() -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The README's synthetic clip x[t, h, w, c] = sin(0.05·(w + 3t) + c)·cos(0.07·h − 0.3t), as [1, 3, 16, 224, 224],
    and the npz of expected logits."""
    expected = dict(np.load(_need("weights/i3d_reference_logits.npz")))
    t, h, w, c = np.meshgrid(np.arange(16), np.arange(224), np.arange(224), np.arange(3), indexing="ij")
    x = (np.sin(0.05 * (w + 3 * t) + c) * np.cos(0.07 * h - 0.3 * t)).astype(np.float32)
    assert x.astype(np.float64).sum() == pytest.approx(float(expected["input_sum"]), abs=1e-6)
    np.testing.assert_array_equal(x[0, 0, :4, :], expected["input_first"])
    return torch.from_numpy(x).permute(3, 0, 1, 2)[None], expected


@pytest.mark.parametrize(("bn_eps", "key"), [(TF_BN_EPS, "logits_tf_eps1e3"), (TORCH_BN_EPS, "logits_bn_eps1e5")])
def test_i3d_reproduces_the_reference_logits(weights, reference, bn_eps, key):
    clip, expected = reference
    model = load_i3d(weights, bn_eps=bn_eps)
    assert model.bn_eps == bn_eps and not model.training
    logits = model(clip).numpy()
    assert logits.shape == (1, 400)
    np.testing.assert_allclose(logits, expected[key], atol=1e-3, rtol=0)
    assert list(np.argsort(-logits[0])[:5]) == [5, 327, 220, 399, 94]


def test_same_padding_is_tf_same():
    # 224 with k7 s2: total 5 → 2 in front, 3 behind; 9 with k3 s2: total 3 − 9 % 2 = 2 → 1, 1; k1: none.
    assert same_padding((9, 224, 224), (3, 7, 7), (2, 2, 2)) == (2, 3, 2, 3, 1, 1)
    assert same_padding((8, 56, 56), (1, 1, 1), (1, 1, 1)) == (0, 0, 0, 0, 0, 0)
    assert same_padding((4, 14, 14), (2, 2, 2), (2, 2, 2)) == (0, 0, 0, 0, 0, 0)


# --------------------------------------------------------------------------- preprocessing and features


def test_preprocess_resizes_scales_and_repeats_grayscale():
    video = torch.randint(0, 256, (2, 9, 64, 64, 1), dtype=torch.uint8)
    x = preprocess(video)
    assert x.shape == (2, 3, 9, 224, 224) and x.dtype == torch.float32
    frames = video.permute(0, 1, 4, 2, 3).reshape(18, 1, 64, 64).float()
    expected = F.interpolate(frames, size=(224, 224), mode="bilinear", align_corners=False) * 2 / 255 - 1
    torch.testing.assert_close(x[:, 0].reshape(18, 224, 224), expected[:, 0])
    assert x[:, 1].equal(x[:, 0]) and x[:, 2].equal(x[:, 0])
    extremes = preprocess(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1, 1).expand(2, 2, 120, 160, 3))
    assert extremes.shape == (2, 3, 2, 224, 224)  # shorter side to 224, centre crop
    torch.testing.assert_close(extremes, torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1, 1).expand_as(extremes))


class _MeanColour(torch.nn.Module):
    """A stand-in I3D: [B, 3, T, 224, 224] → [B, 400] (the mean colour, repeated), recording each batch's size."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (3, 16, 224, 224) and x.min() >= -1 and x.max() <= 1
        self.batches.append(len(x))
        return (self.scale * x.mean(dim=(2, 3, 4))).repeat(1, 134)[:, :400]


def test_i3d_features_batches_and_returns_float64():
    videos = np.stack([np.full((16, 32, 32, 3), v, np.uint8) for v in (0, 51, 102, 153, 255)])
    model = _MeanColour()
    features = i3d_features(model, videos, batch_size=2)
    assert model.batches == [2, 2, 1]
    assert features.shape == (5, 400) and features.dtype == np.float64
    np.testing.assert_allclose(features[:, 0], [v * 2 / 255 - 1 for v in (0, 51, 102, 153, 255)], atol=1e-6)


@pytest.mark.parametrize(
    ("videos", "message"),
    [
        (np.zeros((1, 16, 32, 32, 3), np.float32), "uint8"),
        (np.zeros((16, 32, 32, 3), np.uint8), r"\[N, T, H, W, C\]"),
        (np.zeros((1, 16, 32, 32, 2), np.uint8), "C = 1 or 3"),
        (np.zeros((1, 8, 32, 32, 3), np.uint8), "at least 9 frames"),
    ],
)
def test_i3d_features_rejects_bad_videos(videos, message):
    with pytest.raises(DataError, match=message):
        i3d_features(_MeanColour(), videos)


def test_i3d_rejects_too_few_frames_before_computing():
    with pytest.raises(DataError, match="T≥9"):
        I3D()(torch.zeros(1, 3, 8, 224, 224))


# --------------------------------------------------------------------------- finding and loading the weights


def test_resolve_i3d_path(monkeypatch, tmp_path):
    monkeypatch.delenv("T2VKIT_I3D", raising=False)
    assert resolve_i3d_path(None) is None
    monkeypatch.setenv("T2VKIT_I3D", str(tmp_path / "env.safetensors"))
    assert resolve_i3d_path(None) == tmp_path / "env.safetensors"
    assert resolve_i3d_path(tmp_path / "given.safetensors") == tmp_path / "given.safetensors"


def test_load_i3d_errors_are_one_clear_line(tmp_path):
    with pytest.raises(CheckpointError, match="I3D weights not found"):
        load_i3d(tmp_path / "absent.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_i3d(tmp_path / "junk.safetensors")

    state = {k: v for k, v in I3D().state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file({**state, "logits.conv3d.weight": torch.zeros(600, 1024, 1, 1, 1)}, tmp_path / "shape.safetensors")
    with pytest.raises(CheckpointError, match=r"logits.conv3d.weight is \(600, 1024, 1, 1, 1\)") as err:
        load_i3d(tmp_path / "shape.safetensors")
    assert "\n" not in str(err.value)
    save_file({k: v for k, v in state.items() if k != "Mixed_5c.b0.bn.bias"}, tmp_path / "keys.safetensors")
    with pytest.raises(CheckpointError, match=r"Mixed_5c\.b0\.bn\.bias missing"):
        load_i3d(tmp_path / "keys.safetensors")


# --------------------------------------------------------------------------- Fréchet distance


def test_frechet_distance_of_a_set_with_itself_is_zero():
    a = np.random.default_rng(0).normal(size=(200, 8))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_equals_the_closed_form_on_the_samples_moments():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(250, 6)) @ rng.normal(size=(6, 6)) + 0.7
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr((ΣaΣb)^½) without sqrtm: the eigenvalues of a product of two SPD matrices are real and positive.
    tr_root = np.sqrt(np.linalg.eigvals(s_a @ s_b).real).sum()
    diff = a.mean(0) - b.mean(0)
    expected = diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * tr_root
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_estimates_the_population_value():
    # Diagonal covariances commute, so the closed form is ‖μ1 − μ2‖² + Σ (σ1 − σ2)² = 2.25 + 0.679.
    mu1, mu2 = np.zeros(4), np.array([1.0, 0.5, 0.0, -1.0])
    var1, var2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([2.0, 1.0, 1.0, 0.25])
    truth = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    rng = np.random.default_rng(2)
    n = 20_000  # the mean-difference term's standard error is ≈ 2·sqrt(Δμᵀ(Σ1 + Σ2)Δμ / n) ≈ 0.04
    a = mu1 + rng.normal(size=(n, 4)) * np.sqrt(var1)
    b = mu2 + rng.normal(size=(n, 4)) * np.sqrt(var2)
    assert frechet_distance(a, b) == pytest.approx(truth, abs=0.15)


def test_frechet_distance_survives_singular_covariances():
    # Fewer samples than dimensions: both covariances are singular, as with small FVD sets.
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(10, 32)), rng.normal(size=(10, 32)) + 1
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value > 0
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    assert np.allclose(sqrtm(s_a @ s_b) @ sqrtm(s_a @ s_b), s_a @ s_b, atol=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (np.zeros((1, 4)), np.zeros((5, 4)), "N ≥ 2"),
        (np.zeros((5, 4, 1)), np.zeros((5, 4)), "N ≥ 2, D"),
        (np.zeros((5, 4)), np.zeros((5, 3)), "differ in width"),
        (np.full((5, 4), np.nan), np.zeros((5, 4)), "NaN"),
    ],
)
def test_distances_reject_bad_features(a, b, message):
    with pytest.raises(DataError, match=message):
        frechet_distance(a, b)
    with pytest.raises(DataError, match=message):
        kernel_distance(a, b)


# --------------------------------------------------------------------------- kernel distance


def test_kernel_distance_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same, same_std = kernel_distance(a, b)
    shifted, _ = kernel_distance(a, b + 0.5)
    assert np.isnan(same_std)  # whole sets: one estimate, no spread
    assert abs(same) < 0.02 * shifted and shifted > 0.5


def test_kernel_distance_matches_torchmetrics_kid_on_equal_sets():
    from torchmetrics.image.kid import poly_mmd

    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(50, 10)), rng.normal(size=(50, 10)) + 0.3
    expected = float(poly_mmd(torch.from_numpy(a), torch.from_numpy(b), degree=3, gamma=None, coef=1.0))
    assert kernel_distance(a, b)[0] == pytest.approx(expected, rel=1e-10)


def test_kernel_distance_averages_seeded_subsets_when_sets_are_large():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(120, 8)) + 0.5
    mean, std = kernel_distance(a, b, subsets=20, subset_size=100, seed=7)
    assert (mean, std) == kernel_distance(a, b, subsets=20, subset_size=100, seed=7)
    assert 0 < std < mean
    assert mean == pytest.approx(kernel_distance(a, b, subset_size=1000)[0], rel=0.1)


def test_sample_size_warning_names_the_counts():
    assert sample_size_warning(401, 1000, 400) is None
    text = sample_size_warning(400, 1000, 400)
    assert text is not None and "400 real" in text and "1000 generated" in text
    assert sample_size_warning(1000, 16, 400) is not None
