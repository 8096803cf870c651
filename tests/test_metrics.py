from __future__ import annotations

import math

import torch

from t2vkit.metrics.bucket import best_matches, weighted_summary
from t2vkit.metrics.quality import MAX_PSNR, psnr, ssim


def test_psnr_of_a_known_mse():
    target = torch.zeros(1, 1, 4, 8, 8)
    pred = target + 0.2  # in [-1, 1] units, i.e. 0.1 in [0, 1]: MSE 0.01 → 20 dB
    assert abs(psnr(pred, target).item() - 20.0) < 1e-4
    assert psnr(target, target).item() == MAX_PSNR  # identical frames are capped, not infinite


def test_ssim_is_one_for_identical_videos_and_lower_for_noise():
    torch.manual_seed(0)
    video = torch.rand(2, 1, 3, 32, 32) * 2 - 1
    assert torch.allclose(ssim(video, video), torch.ones(2), atol=1e-5)
    assert (ssim((video + 0.5 * torch.randn_like(video)).clamp(-1, 1), video) < 0.9).all()


def test_bucket_metrics_keep_the_best_match():
    torch.manual_seed(0)
    refs = torch.rand(5, 1, 2, 16, 16) * 2 - 1
    generated = (refs[3:4] + 0.01).clamp(-1, 1)  # nearly reference 3
    best = best_matches(generated, refs)
    assert torch.isclose(best["b_psnr"][0], psnr(generated, refs[3:4])[0])
    assert torch.isclose(best["b_ssim"][0], ssim(generated, refs[3:4])[0])
    assert best["b_psnr"][0] > psnr(generated.expand_as(refs), refs).sort().values[-2]


def test_weighted_summary():
    mean, std = weighted_summary(torch.tensor([1.0, 3.0]), torch.tensor([3.0, 1.0]))
    assert math.isclose(mean, 1.5) and math.isclose(std, math.sqrt(0.75))


def test_mean_pairwise_distance():
    from t2vkit.metrics.diversity import mean_pairwise_distance

    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert math.isclose(mean_pairwise_distance(points), (5 + 0 + 5) / 3)
    assert mean_pairwise_distance(torch.ones(4, 2, 3)) == 0.0  # a collapsed set


def test_the_bucket_median_reference_of_a_one_to_many_bucket_is_the_empty_background():
    from types import SimpleNamespace

    import numpy as np

    from t2vkit.data.torch_dataset import clip_to_tensor
    from t2vkit.metrics.references import bucket_median_reference

    clips = np.zeros((4, 2, 8, 8, 1), dtype=np.uint8)  # one bucket: a bright square in a different corner each
    for i, (y, x) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        clips[i, :, y : y + 4, x : x + 4] = 255
    data = SimpleNamespace(clips=clips, records=[SimpleNamespace(bucket=0)] * 4)
    reference = bucket_median_reference(data, np.arange(4))
    blank = torch.full((1, 1, 2, 8, 8), -1.0)
    expected = psnr(blank, clip_to_tensor(clips[0])[None])
    assert math.isclose(reference["b_psnr"], float(expected), rel_tol=1e-5)  # 6.02 dB: a quarter of the pixels wrong
    assert math.isclose(reference["b_psnr"], 10 * math.log10(4), rel_tol=1e-4)


def test_the_split_median_reference_scores_the_median_clip_against_every_clip():
    from types import SimpleNamespace

    import numpy as np

    from t2vkit.data.torch_dataset import clip_to_tensor
    from t2vkit.metrics.references import split_median_reference

    clips = np.zeros((3, 2, 8, 8, 1), dtype=np.uint8)
    clips[1, :, :4] = 255  # the median clip is clip 0 (all zeros): clip 0 is matched exactly, 1 and 2 are not
    clips[2, :, 4:] = 255
    reference = split_median_reference(SimpleNamespace(clips=clips), np.arange(3), batch_size=2)
    wrong = float(psnr(clip_to_tensor(clips[0])[None], clip_to_tensor(clips[1])[None]))
    assert math.isclose(reference["psnr"], (MAX_PSNR + 2 * wrong) / 3, rel_tol=1e-5)
    assert math.isclose(reference["ssim"], float(ssim(clip_to_tensor(clips[0])[None].expand(3, -1, -1, -1, -1),
                                                      torch.stack([clip_to_tensor(c) for c in clips])).mean()),
                        rel_tol=1e-5)  # fmt: skip
