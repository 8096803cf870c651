"""Distances between two sets of features: FVD's Fréchet distance and KVD's kernel distance (seed 000, A.3.1).

Both take float feature matrices ``[N, D]`` (for FVD/KVD the 400-d I3D logits of real and generated
videos) and compute in float64. The Fréchet distance follows the TTUR / pytorch-fid FID code the
paper cites; the kernel distance is KID's unbiased polynomial-kernel MMD² (Bińkowski et al. 2018),
which Unterthiner et al. use as KVD.
"""

from __future__ import annotations

import numpy as np

from t2vkit.errors import DataError

# Diagonal offset that FID code adds to both covariances when their product has no usable square root.
SQRTM_EPS = 1e-6
# Largest imaginary part allowed on the diagonal of sqrtm's result before it counts as a failure (as pytorch-fid).
IMAG_ATOL = 1e-3


def _features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or len(x) < 2:
        raise DataError(f"{name} features must be [N ≥ 2, D], got shape {list(x.shape)}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise DataError(f"{name} features must be real numbers, got {x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise DataError(f"{name} features contain NaN or inf")
    return x


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _features(a, "first"), _features(b, "second")
    if a.shape[1] != b.shape[1]:
        raise DataError(f"feature sets differ in width: {a.shape[1]} vs {b.shape[1]}")
    return a, b


def _sqrtm_trace(s1: np.ndarray, s2: np.ndarray) -> float | None:
    """Tr((s1·s2)^½) with scipy's sqrtm, or None when the root is not finite or clearly complex."""
    from scipy.linalg import sqrtm

    root = sqrtm(s1 @ s2)
    if not np.isfinite(root).all():
        return None
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=IMAG_ATOL):
            return None
        root = root.real
    return float(np.trace(root))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of feature sets ``a`` ``[N, D]`` and ``b`` ``[M, D]``:
    ‖μa − μb‖² + Tr(Σa + Σb − 2(ΣaΣb)^½), with unbiased covariances.

    As in FID code, a product with no usable square root (too few samples for a full-rank covariance makes
    it singular) is retried with ``SQRTM_EPS`` added to both diagonals; a tiny imaginary part from round-off is
    dropped. If the retry fails too, a ``DataError`` says so rather than returning a number. See
    ``sample_size_warning`` for sets too small for a stable estimate.
    """
    a, b = _pair(a, b)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    tr_root = _sqrtm_trace(s_a, s_b)
    if tr_root is None:
        offset = np.eye(len(s_a)) * SQRTM_EPS
        tr_root = _sqrtm_trace(s_a + offset, s_b + offset)
    if tr_root is None:
        raise DataError("Fréchet distance: the covariance product has no real square root, even with an eps offset")
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * tr_root)


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    """Unbiased MMD² with k(u, v) = (γ u·v + c)^d: the within-set means leave out the diagonal (k(u, u))."""
    m, n = len(x), len(y)
    k_xx = (gamma * x @ x.T + coef0) ** degree
    k_yy = (gamma * y @ y.T + coef0) ** degree
    k_xy = (gamma * x @ y.T + coef0) ** degree
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


def kernel_distance(
    a: np.ndarray,
    b: np.ndarray,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID/KVD: the unbiased polynomial-kernel MMD² between feature sets ``a`` and ``b``, k(x, y) = (γ x·y + c)^d
    with γ = 1/D by default. Returns ``(mean, std)``.

    Sets that both fit in ``subset_size`` are compared whole, in one estimate: ``std`` is then NaN (there is
    no spread to report). Larger sets are compared as KID does: ``subsets`` random pairs of subsets of
    min(N, M, ``subset_size``) samples each (drawn without replacement, seeded), giving the mean and the
    standard deviation over subsets. Unbiased means the value can dip slightly below 0 for equal distributions.
    """
    a, b = _pair(a, b)
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    if subset_size < 2 or subsets < 1:
        raise ValueError(f"need subset_size ≥ 2 and subsets ≥ 1, got {subset_size} and {subsets}")
    if len(a) <= subset_size and len(b) <= subset_size:
        return _polynomial_mmd2(a, b, degree, gamma, coef0), float("nan")
    size = min(len(a), len(b), subset_size)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)]
        values.append(_polynomial_mmd2(x, y, degree, gamma, coef0))
    return float(np.mean(values)), float(np.std(values))


def sample_size_warning(n_real: int, n_fake: int, dim: int) -> str | None:
    """A warning to print beside FVD/KVD when a set has no more samples than feature dimensions (its D×D
    covariance is then singular, and the Fréchet distance unstable and biased upwards); None otherwise."""
    if min(n_real, n_fake) > dim:
        return None
    return (
        f"FVD is unreliable with {n_real} real and {n_fake} generated videos: a covariance of {dim} feature "
        f"dimensions needs more than {dim} videos per set to be non-singular (KVD is noisy at this size too)"
    )
