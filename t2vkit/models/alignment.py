"""The stage-2 losses of seed 000 (Section 3, 4.2.2 and 4.2.3): the cost of Eq. 2, the bucket loss
of Eq. 4, and the alignment losses of the baselines and ablations (InfoNCE, VICReg, BYOL's
normalised MSE). Plain functions on tensors, so every aligner plugin (and a third-party one) can
reuse them; the aligners' objectives weight them and give them their logged names.

Shapes: B = batch, d = the width of the space being aligned (shared codes, or flattened video
latents for the non-progressive ablation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a − b‖₁ as the paper's costs use it: a per-element mean of |a − b|, so terms of different
    sizes (shared codes, latents, videos) keep comparable scales under their λ."""
    return (a - b).abs().mean()


def decoupling_cost(
    z1: torch.Tensor,
    z2: torch.Tensor,
    y1: torch.Tensor,
    y2: torch.Tensor,
    latent: torch.Tensor,
    video: torch.Tensor,
    decode: Callable[[torch.Tensor], torch.Tensor],
    lambda_s: float,
    lambda_feat: float,
    lambda_pixel: float,
) -> dict[str, torch.Tensor]:
    """The cost c(z1, z2) of Eq. 2, as separate weighted terms:

    ``shared``       λ_s·‖z1 − z2‖₁                       z1 = E_s(z_v) ("real"), z2 = M(t̂) ("generated")
    ``feat_pair``    λ_feat·‖G_s(z1) − G_s(z2)‖₁
    ``feat_video``   λ_feat·‖G_s(z1) − z_v‖₁              the video shared autoencoder's reconstruction
    ``feat_text``    λ_feat·‖G_s(z2) − z_v‖₁              the generation path, in the video latent space
    ``pixel_video``  λ_pixel·‖G(G_s(z1)) − v‖₁
    ``pixel_text``   λ_pixel·‖G(G_s(z2)) − v‖₁            the generation path, in pixels

    ``z1, z2``: ``[B, d_zs]``; ``y1 = G_s(z1)``, ``y2 = G_s(z2)`` and ``latent`` (z_v): ``[B, *latent_shape]``;
    ``video``: ``[B, C, T, H, W]``; ``decode`` is the frozen stage-1 decoder G (its parameters take no
    gradient, its input does). G's output is compared unclamped: clamping would cut the gradient
    wherever G overshoots [-1, 1]. A term whose weight is 0 is not computed (no decoder call for
    λ_pixel = 0).
    """
    terms: dict[str, torch.Tensor] = {}
    if lambda_s > 0:
        terms["shared"] = lambda_s * l1(z1, z2)
    if lambda_feat > 0:
        terms["feat_pair"] = lambda_feat * l1(y1, y2)
        terms["feat_video"] = lambda_feat * l1(y1, latent)
        terms["feat_text"] = lambda_feat * l1(y2, latent)
    if lambda_pixel > 0:
        terms["pixel_video"] = lambda_pixel * l1(decode(y1), video)
        terms["pixel_text"] = lambda_pixel * l1(decode(y2), video)
    return terms


def direct_cost(
    y: torch.Tensor,
    latent: torch.Tensor,
    video: torch.Tensor,
    decode: Callable[[torch.Tensor], torch.Tensor],
    lambda_feat: float,
    lambda_pixel: float,
) -> dict[str, torch.Tensor]:
    """Eq. 2 without a shared space (the non-progressive ablation of 4.2.3), y = M(t̂) ``[B, *latent_shape]``:
    ``feat_text`` λ_feat·‖y − z_v‖₁ and ``pixel_text`` λ_pixel·‖G(y) − v‖₁ (zero weights skipped)."""
    terms: dict[str, torch.Tensor] = {}
    if lambda_feat > 0:
        terms["feat_text"] = lambda_feat * l1(y, latent)
    if lambda_pixel > 0:
        terms["pixel_text"] = lambda_pixel * l1(decode(y), video)
    return terms


def similarity(text: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    """S_ij = (cos(text_i, video_j) + 1) / 2 of Eq. 4, in [0, 1]: ``[B, d] × [B, d] → [B, B]``."""
    return (F.normalize(text, dim=1) @ F.normalize(video, dim=1).T + 1) / 2


def bucket_loss_terms(
    text: torch.Tensor,
    video: torch.Tensor,
    bucket: torch.Tensor,
    alpha: float = 2.0,
    lambda_neg: float = 1.0,
    lambda_pos: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of the bucket loss, Eq. 4, implemented as printed: (negative, positive).

    ``text``: z_t^s ``[N, d]`` (the clean captions' shared codes); ``video``: z_v^s ``[N, d]`` (row j is
    the clip paired with caption j); ``bucket``: ``[N]`` ids. With S = :func:`similarity`,
    B_i = {j : bucket_j = bucket_i} (i included) and λ_ij = α if i = j else 1::

        negative = λ_neg/N · Σ_i Σ_{j∉B_i} S_ij / |B_i|
        positive = λ_pos/N · (α − Σ_i Σ_{j∈B_i} λ_ij·S_ij / |B_i|)

    Read literally, two things follow from the printed equation (kept, not "fixed"):

    - λ_pos·α/N stands outside the sum: a constant that shifts the logged value and gives no gradient.
      The loss can be negative.
    - The negative term is divided by |B_i| too (the size of text i's *own* bucket, not the number of
      negatives), so a caption from a large bucket pushes its negatives less.

    N_t = N_v = N here: each batch row is one (caption, clip) pair, so the direct match of text i is
    video i, which the positive term weights α.
    """
    n = text.shape[0]
    s = similarity(text, video)  # [N, N]
    same = bucket[:, None] == bucket[None, :]  # [N, N] bool, j ∈ B_i; the diagonal is always True
    size = same.sum(1, keepdim=True).to(s.dtype)  # [N, 1] |B_i|
    weight = torch.ones_like(s)
    weight.diagonal().fill_(alpha)  # λ_ij: α on the direct pair
    negative = lambda_neg / n * (s * ~same / size).sum()
    positive = lambda_pos / n * (alpha - (weight * s * same / size).sum())
    return negative, positive


def bucket_loss(
    text: torch.Tensor,
    video: torch.Tensor,
    bucket: torch.Tensor,
    alpha: float = 2.0,
    lambda_neg: float = 1.0,
    lambda_pos: float = 1.0,
) -> torch.Tensor:
    """L_bucket of Eq. 4: the sum of :func:`bucket_loss_terms` (see there for the reading)."""
    negative, positive = bucket_loss_terms(text, video, bucket, alpha, lambda_neg, lambda_pos)
    return negative + positive


def info_nce(text: torch.Tensor, video: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP's symmetric InfoNCE (van den Oord et al. 2018; Radford et al. 2021) over a batch of pairs.

    logits = scale · cos(text_i, video_j) ``[B, B]``; the loss is the mean of the cross-entropies
    text→video (rows) and video→text (columns) with the diagonal as the target. Every off-diagonal
    pair is a negative, also when it shares the caption's bucket: the one-to-one assumption the
    paper's bucket loss drops. ``scale`` is the multiplier (CLIP's exp(logit_scale)), not its log.
    """
    logits = scale * (F.normalize(text, dim=1) @ F.normalize(video, dim=1).T)  # [B, B]
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def vicreg_terms(
    x: torch.Tensor, y: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VICReg's three terms (Bardes et al. 2022), unweighted: (invariance, variance, covariance).

    ``x``, ``y``: ``[B, d]``, here the two modality streams (text and video shared codes).
    invariance = mean (x − y)²; variance = mean over dimensions of max(0, γ − sqrt(Var + ε)),
    averaged over x and y; covariance = Σ of the squared off-diagonal covariances / d, summed over
    x and y. As in the paper's code: unbiased variance and covariance (B − 1), ε = 1e-4.
    """
    invariance = F.mse_loss(x, y)
    variance = x.new_zeros(())
    covariance = x.new_zeros(())
    for z in (x, y):
        z = z - z.mean(0)
        std = torch.sqrt(z.var(0) + eps)  # [d]
        variance = variance + F.relu(gamma - std).mean() / 2
        n, d = z.shape
        cov = z.T @ z / (n - 1)  # [d, d]
        covariance = covariance + (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / d
    return invariance, variance, covariance


def normalized_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL's loss (Grill et al. 2020): ‖p/‖p‖ − z/‖z‖‖² = 2 − 2·cos(p, z), a mean over the batch.
    ``target`` should come detached (BYOL's stop-gradient); this function does not detach it."""
    return (2 - 2 * F.cosine_similarity(prediction, target, dim=-1)).mean()


__all__ = [
    "bucket_loss",
    "bucket_loss_terms",
    "decoupling_cost",
    "direct_cost",
    "info_nce",
    "l1",
    "normalized_mse",
    "similarity",
    "vicreg_terms",
]
