"""LPIPS (AlexNet) and DISTS (VGG16) with RANDOM backbones saved in torchvision's key layout: the ImageNet
weights are not available offline. The LPIPS heads are the real v0.1 ones from shared data where present
(else that variant is skipped, naming the file) and random non-negative ones otherwise."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import _need
from safetensors.torch import save_file

from t2vkit.errors import CheckpointError
from t2vkit.metrics.bucket import best_matches
from t2vkit.metrics.dists import CHANNELS as DISTS_CHANNELS
from t2vkit.metrics.dists import dists_video, load_dists, resolve_dists
from t2vkit.metrics.frame_distance import FrameDistance
from t2vkit.metrics.lpips import CHANNELS as LPIPS_CHANNELS
from t2vkit.metrics.lpips import LPIPS, load_lpips, lpips_video, resolve_lpips
from t2vkit.metrics.quality import psnr
from t2vkit.models.backbones import alexnet, vgg16

ENV = ("T2VKIT_LPIPS_BACKBONE", "T2VKIT_LPIPS_HEADS", "T2VKIT_DISTS_BACKBONE", "T2VKIT_DISTS_WEIGHTS")


def random_torchvision_state(features: nn.Sequential, seed: int) -> dict[str, torch.Tensor]:
    """He-initialised conv weights (activations keep their scale through 13 VGG layers), small biases,
    keyed like torchvision's full model, plus a classifier tensor the loaders must ignore."""
    torch.manual_seed(seed)
    state = {}
    for name, tensor in features.state_dict().items():
        if name.endswith("weight"):
            fan_in = tensor[0].numel()
            state[f"features.{name}"] = torch.randn_like(tensor) * math.sqrt(2 / fan_in)
        else:
            state[f"features.{name}"] = 0.01 * torch.randn_like(tensor)
    state["classifier.1.weight"] = torch.zeros(8, 4)
    return state


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("perceptual")
    names = {"alex": "alexnet-random.pth", "alex_st": "alexnet.safetensors", "vgg": "vgg16.safetensors",
             "heads": "alex_heads.pth", "dists": "weights.pt"}  # fmt: skip
    paths = {key: root / name for key, name in names.items()}
    alex = random_torchvision_state(alexnet().features, seed=0)
    torch.save(alex, paths["alex"])
    save_file(alex, str(paths["alex_st"]))
    save_file(random_torchvision_state(vgg16().features, seed=1), str(paths["vgg"]))
    torch.manual_seed(2)
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(LPIPS_CHANNELS)}, paths["heads"])
    n = sum(DISTS_CHANNELS)
    torch.save({"alpha": 0.05 + 0.1 * torch.rand(1, n, 1, 1), "beta": 0.05 + 0.1 * torch.rand(1, n, 1, 1)},
               paths["dists"])  # fmt: skip
    return paths


def lpips_heads(which: str, files: dict[str, Path]) -> Path:
    """The real LPIPS v0.1 AlexNet heads (shared data; skipped, naming the file, where absent), or random ones."""
    return _need("weights/lpips_v0.1/alex.pth") if which == "shared" else files["heads"]


@pytest.fixture(scope="module", params=["shared", "random"])
def heads(request: pytest.FixtureRequest, files: dict[str, Path]) -> Path:
    return lpips_heads(request.param, files)


@pytest.fixture(scope="module", params=["lpips-shared-heads", "lpips-random-heads", "dists"])
def metric(request: pytest.FixtureRequest, files: dict[str, Path]) -> FrameDistance:
    """Each metric as loaded from its files (LPIPS with both kinds of heads)."""
    if request.param == "dists":
        return load_dists(files["vgg"], files["dists"])
    return load_lpips(files["alex"], lpips_heads(request.param.split("-")[1], files))


def score_videos(model: FrameDistance, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (lpips_video if isinstance(model, LPIPS) else dists_video)(model, pred, target)


def frames(n: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Random frames ``[n, C, 64, 64]`` in [-1, 1]: smooth structure plus some fine texture, like images."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(n, channels, 8, 8, generator=g), size=64, mode="bilinear")
    return (0.8 * coarse + 0.2 * torch.rand(n, channels, 64, 64, generator=g)) * 2 - 1


def videos(b: int, t: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return frames(b * t, channels, seed).view(b, t, channels, 64, 64).transpose(1, 2)  # [B, C, T, H, W]


def noisy(x: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(-1, 1)


# --------------------------------------------------------------------------- the metrics' properties


def test_the_loaders_take_torchvision_files_as_pth_or_safetensors(files: dict[str, Path], heads: Path) -> None:
    x, y = frames(2), frames(2, seed=3)
    from_pth, from_st = load_lpips(files["alex"], heads), load_lpips(files["alex_st"], heads)
    assert torch.equal(from_pth(x, y), from_st(x, y))
    assert not any(p.requires_grad for p in from_pth.parameters())


def test_a_frame_against_itself_is_zero(metric: FrameDistance) -> None:
    x, video = metric.prepare(frames(3)), videos(2, 3)
    if isinstance(metric, LPIPS):
        assert torch.equal(metric(x, x), torch.zeros(3))
        assert torch.equal(score_videos(metric, video, video), torch.zeros(2))
    else:  # DISTS: 1 − (Σα + Σβ)/(Σα + Σβ), up to rounding
        assert metric(x, x).abs().max() < 1e-5 and score_videos(metric, video, video).abs().max() < 1e-5


def test_it_is_symmetric(metric: FrameDistance) -> None:
    x, y = metric.prepare(frames(3)), metric.prepare(noisy(frames(3), 0.3))
    assert torch.allclose(metric(x, y), metric(y, x), rtol=0, atol=1e-6)


def test_more_noise_is_further(metric: FrameDistance) -> None:
    video = videos(2, 2)
    distances = torch.stack([score_videos(metric, noisy(video, sigma), video) for sigma in (0.05, 0.2, 0.6)])  # [3, B]
    assert (distances[0] > 0).all() and (distances.diff(dim=0) > 0).all(), distances


def test_a_video_score_is_the_mean_over_its_frames(metric: FrameDistance) -> None:
    pred, target = videos(2, 3), noisy(videos(2, 3, seed=5), 0.2)
    by_frame = torch.stack([metric(metric.prepare(pred[:, :, t]), metric.prepare(target[:, :, t])) for t in range(3)])
    assert torch.allclose(score_videos(metric, pred, target), by_frame.mean(dim=0), rtol=0, atol=1e-6)


def test_grey_videos_are_scored_as_rgb(metric: FrameDistance) -> None:
    pred, target = videos(2, 2, channels=1), videos(2, 2, channels=1, seed=4)
    rgb = (pred.expand(-1, 3, -1, -1, -1), target.expand(-1, 3, -1, -1, -1))
    assert torch.equal(score_videos(metric, pred, target), score_videos(metric, *rgb))


# --------------------------------------------------------------------------- the definitions, recomputed by hand


def test_lpips_matches_its_definition(files: dict[str, Path], heads: Path) -> None:
    """Zhang et al.'s LPIPS v0.1 written out in float64 from the files' tensors, no t2vkit module involved."""
    net, lin = (torch.load(p, map_location="cpu", weights_only=True) for p in (files["alex"], heads))
    a, b = frames(1), noisy(frames(1), 0.3)

    def conv(x: torch.Tensor, i: int, stride: int, padding: int) -> torch.Tensor:
        w, bias = net[f"features.{i}.weight"].double(), net[f"features.{i}.bias"].double()
        return F.relu(F.conv2d(x, w, bias, stride=stride, padding=padding))

    def relus(x: torch.Tensor) -> list[torch.Tensor]:
        shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
        scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)
        r1 = conv((x.double() - shift) / scale, 0, 4, 2)
        r2 = conv(F.max_pool2d(r1, 3, 2), 3, 1, 2)
        r3 = conv(F.max_pool2d(r2, 3, 2), 6, 1, 1)
        r4 = conv(r3, 8, 1, 1)
        return [r1, r2, r3, r4, conv(r4, 10, 1, 1)]

    expected = 0.0
    for i, (fa, fb) in enumerate(zip(relus(a), relus(b), strict=True)):
        na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        w = lin[f"lin{i}.model.1.weight"].double().view(1, -1, 1, 1)
        expected += float(((na - nb) ** 2 * w).sum(dim=1).mean())
    assert expected > 0
    assert math.isclose(float(load_lpips(files["alex"], heads)(a, b)), expected, rel_tol=1e-4)


def test_dists_matches_its_definition(files: dict[str, Path]) -> None:
    """Ding et al.'s DISTS written out in float64 from the files' tensors, no t2vkit module involved."""
    net = {k: v.double() for k, v in torch.load(files["dists"], map_location="cpu", weights_only=True).items()}
    from safetensors.torch import load_file

    vgg = {k: v.double() for k, v in load_file(str(files["vgg"])).items()}
    x, y = (frames(1) + 1) / 2, (noisy(frames(1), 0.3) + 1) / 2

    def l2pool(h: torch.Tensor) -> torch.Tensor:
        k = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float64) / 16
        blurred = F.conv2d(h**2, k.expand(h.shape[1], 1, 3, 3), stride=2, padding=1, groups=h.shape[1])
        return (blurred + 1e-12).sqrt()

    def stages(image: torch.Tensor) -> list[torch.Tensor]:
        mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
        h, out = (image.double() - mean) / std, [image.double()]
        for i, convs in enumerate([(0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28)]):
            h = l2pool(h) if i else h
            for c in convs:
                h = F.relu(F.conv2d(h, vgg[f"features.{c}.weight"], vgg[f"features.{c}.bias"], padding=1))
            out.append(h)
        return out

    total = net["alpha"].sum() + net["beta"].sum()
    alphas = torch.split(net["alpha"].flatten() / total, DISTS_CHANNELS)
    betas = torch.split(net["beta"].flatten() / total, DISTS_CHANNELS)
    similarity = 0.0
    for fx, fy, alpha, beta in zip(stages(x), stages(y), alphas, betas, strict=True):
        mx, my = fx.mean(dim=(2, 3)), fy.mean(dim=(2, 3))
        vx, vy = fx.var(dim=(2, 3), unbiased=False), fy.var(dim=(2, 3), unbiased=False)
        cov = ((fx - mx[..., None, None]) * (fy - my[..., None, None])).mean(dim=(2, 3))
        similarity += float((alpha * (2 * mx * my + 1e-6) / (mx**2 + my**2 + 1e-6)).sum())
        similarity += float((beta * (2 * cov + 1e-6) / (vx + vy + 1e-6)).sum())
    expected = 1 - similarity
    assert expected > 0.01
    assert math.isclose(float(load_dists(files["vgg"], files["dists"])(x, y)), expected, rel_tol=1e-4, abs_tol=1e-6)


# --------------------------------------------------------------------------- bucket metrics


def test_the_bucket_match_is_the_smallest_distance(metric: FrameDistance, monkeypatch: pytest.MonkeyPatch) -> None:
    refs = torch.stack([videos(1, 2, channels=1, seed=s)[0] for s in range(4)])  # [4, 1, 2, 64, 64]
    generated = torch.stack([noisy(refs[2], 0.1), noisy(refs[0], 0.1)])  # nearest: references 2 and 0
    best = best_matches(generated, refs, perceptual={"b_perceptual": metric})
    assert set(best) == {"b_psnr", "b_ssim", "b_perceptual"}
    assert torch.isclose(best["b_psnr"][0], psnr(generated[:1], refs[2:3])[0])  # the pixel metrics are unchanged
    for g, nearest in enumerate((2, 0)):
        each = score_videos(metric, generated[g : g + 1].expand_as(refs), refs)  # [R]
        assert each.argmin() == nearest and torch.isclose(best["b_perceptual"][g], each.min(), rtol=0, atol=1e-6)
    monkeypatch.setattr(metric, "frame_batch", 2)  # one video per pass: references embedded again per generated one
    chunked = best_matches(generated, refs, perceptual={"b_perceptual": metric})["b_perceptual"]
    assert torch.allclose(chunked, best["b_perceptual"], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- weight files: where and what


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_resolve_names_the_missing_file(no_env: pytest.MonkeyPatch, files: dict[str, Path], tmp_path: Path) -> None:
    assert resolve_lpips() == (None, "no AlexNet weights: pass --lpips-backbone or set T2VKIT_LPIPS_BACKBONE")
    assert resolve_lpips(files["alex"]) == (None, "no LPIPS heads: pass --lpips-heads or set T2VKIT_LPIPS_HEADS")
    assert resolve_dists() == (None, "no VGG16 weights: pass --dists-backbone or set T2VKIT_DISTS_BACKBONE")
    no_env.setenv("T2VKIT_DISTS_BACKBONE", str(files["vgg"]))
    no_env.setenv("T2VKIT_DISTS_WEIGHTS", str(tmp_path / "gone.pt"))
    assert resolve_dists() == (None, f"DISTS weights not found: {tmp_path / 'gone.pt'} (from T2VKIT_DISTS_WEIGHTS)")
    assert resolve_dists(weights=files["dists"]) == ((files["vgg"], files["dists"]), "")  # an argument beats the env
    no_env.setenv("T2VKIT_LPIPS_BACKBONE", str(files["alex"]))
    no_env.setenv("T2VKIT_LPIPS_HEADS", str(files["heads"]))
    assert resolve_lpips() == ((files["alex"], files["heads"]), "")


class NotATensor:
    pass


def one_line_error(load: Callable[..., object], *paths: Path) -> str:
    with pytest.raises(CheckpointError) as caught:
        load(*paths)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_bad_weight_files_are_one_clear_error(files: dict[str, Path], tmp_path: Path) -> None:
    gone = tmp_path / "alexnet-owt-7be5be79.pth"
    message = one_line_error(load_lpips, gone, files["heads"])
    assert "AlexNet weights not found" in message and "download.pytorch.org/models/alexnet-owt-7be5be79.pth" in message
    assert "--lpips-backbone" in message and "T2VKIT_LPIPS_BACKBONE" in message
    assert "lpips/weights/v0.1/alex.pth" in one_line_error(load_lpips, files["alex"], tmp_path / "alex.pth")
    assert "vgg16-397923af.pth" in one_line_error(load_dists, tmp_path / "vgg16.pth", files["dists"])
    assert "DISTS_pytorch" in one_line_error(load_dists, files["vgg"], tmp_path / "weights.pt")

    state = random_torchvision_state(alexnet().features, seed=0)
    state["features.3.weight"] = torch.zeros(192, 64, 3, 3)
    torch.save(state, tmp_path / "wrong.pth")
    message = one_line_error(load_lpips, tmp_path / "wrong.pth", files["heads"])
    assert "'features.3.weight' has shape (192, 64, 3, 3)" in message and "(192, 64, 5, 5)" in message

    vgg = random_torchvision_state(vgg16().features, seed=1)
    del vgg["features.28.bias"]
    save_file(vgg, str(tmp_path / "vgg.safetensors"))
    assert "'features.28.bias' is missing" in one_line_error(load_dists, tmp_path / "vgg.safetensors", files["dists"])

    torch.save({f"lin{i}.model.1.weight": torch.rand(1, 8, 1, 1) for i in range(5)}, tmp_path / "heads.pth")
    assert "'lin0.model.1.weight' has shape (1, 8, 1, 1)" in one_line_error(load_lpips, files["alex"],
                                                                            tmp_path / "heads.pth")  # fmt: skip
    torch.save({"alpha": torch.rand(1, 1472, 1, 1), "beta": torch.rand(1, 1475, 1, 1)}, tmp_path / "ab.pt")
    assert "'alpha' has shape (1, 1472, 1, 1)" in one_line_error(load_dists, files["vgg"], tmp_path / "ab.pt")

    (tmp_path / "garbage.pth").write_bytes(b"this is no weight file")
    assert "not a readable weight file for the AlexNet" in one_line_error(load_lpips, tmp_path / "garbage.pth",
                                                                          files["heads"])  # fmt: skip
    torch.save({"alpha": NotATensor()}, tmp_path / "code.pt")  # weights_only refuses to build arbitrary objects
    assert "not a readable weight file" in one_line_error(load_dists, files["vgg"], tmp_path / "code.pt")
    torch.save({"alpha": 1.0, "beta": 2.0}, tmp_path / "floats.pt")
    assert "flat dict of tensors" in one_line_error(load_dists, files["vgg"], tmp_path / "floats.pt")
