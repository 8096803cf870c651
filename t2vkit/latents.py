"""``t2vkit latents``: pictures of a run's latent spaces, like the paper's Figures 2–5 (seed 000, 4.2, A.3.2).

Up to three spaces, each a cloud of points per clip of a split, coloured by bucket:

- ``text``: the text encoder's pooled caption embeddings z_t (Figure 2, first row);
- ``shared``: the aligner's shared semantic space, M(z_t) (mapped) vs E_s(z_v) (real) (Figure 5);
  aligners without one (``direct``) skip it;
- ``video``: what the aligner predicts as z_v, G_s(M(z_t)), vs the stage-1 encoder's E_v(x) (Figures 3–4).

A stage-1 run draws the real clips' video latents only; a diffusion run the text space and the real
clips' latents (it has no mapping to draw). Each space is projected to 2-D as one joined cloud (mapped
and real together) with PCA, t-SNE (PCA to 32 components first, perplexity 40, 600 iterations, A.3.2)
or UMAP (umap-learn's defaults; fewer neighbours when there are few points), and drawn as one PNG per
space and method, ``SPACE-METHOD.png``.

PCA is fit on every point, so a caption shared by many clips weighs in the variance as often as it
occurs. t-SNE and UMAP are fit on the distinct points and duplicates take their point's place: on a
data set whose captions repeat (SyncDraw-MM has 20), the text and mapped clouds hold few distinct
points, and both methods break down on many zero distances.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2vkit.checkpoint import read_config
from t2vkit.data.store import PreparedDataset
from t2vkit.data.torch_dataset import clip_to_tensor
from t2vkit.errors import CheckpointError, DataError, T2VError
from t2vkit.fsutil import atomic_path

METHODS = ("pca", "tsne", "umap")
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
VIZ_HINT = 'pip install "t2vkit[viz]"'


@dataclass
class LatentsConfig:
    """What to draw and how; the projection settings default to the paper's (A.3.2)."""

    methods: tuple[str, ...] = METHODS
    split: str = "test"
    per_bucket: int = 50  # clips drawn per bucket (0: every clip of the split)
    seed: int = 0  # which clips, and the seed of t-SNE and UMAP
    tsne_pca: int = 32  # PCA components before t-SNE
    perplexity: float = 40.0  # capped at (distinct points − 1) / 3 when there are few
    tsne_iterations: int = 600
    umap_neighbors: int = 15  # capped at distinct points − 1
    batch_size: int = 64
    device: str = "cpu"
    figsize: tuple[float, float] = (8.4, 5.4)  # inches; a PNG is figsize × dpi pixels
    dpi: int = 100


@dataclass
class Cloud:
    """One set of points in a space: ``points [N, d]``, one per drawn clip, ``buckets [N]``."""

    label: str  # legend text, e.g. "real: E_v(x)"
    kind: str  # "real" (from the clip), "mapped" (from the caption), "text"
    points: np.ndarray
    buckets: np.ndarray


@dataclass
class Space:
    key: str  # one of SPACES
    title: str
    clouds: list[Cloud]


@dataclass
class Panel:
    """One projected space: 2-D coordinates per cloud, in the order of ``space.clouds``."""

    space: Space
    method: str
    coords: list[np.ndarray]  # [N_i, 2] each
    axes: tuple[str, str]
    settings: str  # what the projection did, shown on the figure
    path: Path | None = None


@dataclass
class LatentsResult:
    spaces: list[Space]
    panels: list[Panel] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # spaces and methods skipped, and why
    clips: int = 0
    buckets: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [p.path for p in self.panels if p.path is not None]


# --------------------------------------------------------------------------- optional dependencies


def require_viz() -> None:
    """matplotlib and scikit-learn, or one error naming the missing one and the extra that brings it."""
    for module, package in (("matplotlib", "matplotlib"), ("sklearn", "scikit-learn")):
        try:
            __import__(module)
        except ImportError:
            raise T2VError(f"`t2vkit latents` needs {package}, which is not installed: {VIZ_HINT}") from None


def umap_missing() -> str:
    """Why UMAP cannot be drawn here, or "" when it can."""
    try:
        import umap  # noqa: F401
    except ImportError as exc:
        return f"umap-learn is not installed ({exc}): {VIZ_HINT}"
    return ""


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    methods = tuple(dict.fromkeys(m.strip().lower() for m in methods if m.strip()))
    if not methods:
        raise T2VError(f"no projection method given; methods: {', '.join(METHODS)}")
    for m in methods:
        if m not in METHODS:
            raise T2VError(f"unknown projection method {m!r}; methods: {', '.join(METHODS)}")
    return methods


# --------------------------------------------------------------------------- embeddings


def pick_clips(data: PreparedDataset, split: str, per_bucket: int, seed: int) -> np.ndarray:
    """Up to ``per_bucket`` clips of each bucket of ``split`` (all with 0), drawn with ``seed``, sorted."""
    if per_bucket < 0:
        raise T2VError(f"--per-bucket must be 0 (every clip) or more, got {per_bucket}")
    indices = data.indices(split)
    if len(indices) == 0:
        raise DataError(f"{data.root} has no {split} clips")
    if per_bucket == 0:
        return indices
    rng = np.random.default_rng(seed)
    buckets = np.array([data.records[i].bucket for i in indices])
    chosen = [rng.choice(indices[buckets == b], min(per_bucket, int((buckets == b).sum())), replace=False)
              for b in np.unique(buckets)]  # fmt: skip
    return np.sort(np.concatenate(chosen))


def _check_dataset(config: dict[str, Any], data: PreparedDataset, run_dir: Path) -> None:
    recorded = config.get("dataset", {}).get("clip_shape")
    if list(recorded or []) != list(data.clip_shape):
        raise DataError(f"{data.root} has clips of shape {list(data.clip_shape)} (T, H, W, C); {run_dir} was "
                        f"trained on {recorded}")  # fmt: skip


def _load(run_dir: Path, config: dict[str, Any], device: str) -> tuple[Any, Any, Any]:
    """The run's text encoder, video autoencoder and aligner (None where the run has none)."""
    from t2vkit.interfaces import Aligner
    from t2vkit.pipeline import Pipeline
    from t2vkit.runs import load_decoder

    stage = config.get("stage")
    if stage == "video":
        return None, load_decoder(run_dir, device)[0], None
    if stage not in ("align", "diffusion"):
        raise CheckpointError(f"{run_dir} is a {stage!r} run; latents takes stage-1, align and diffusion runs")
    pipeline = Pipeline.from_run(run_dir, device=device)
    aligner = getattr(pipeline.sampler, "aligner", None) if stage == "align" else None
    if stage == "align" and not isinstance(aligner, Aligner):
        raise CheckpointError(f"{run_dir}: its sampler holds no aligner to draw")
    return pipeline.encoder, pipeline.decoder, aligner


@torch.no_grad()
def embed(run_dir: str | Path, dataset: str | Path, config: LatentsConfig | None = None) -> LatentsResult:
    """Load the run, draw clips from the data set and put them through every network the run has."""
    from t2vkit.text_cache import embed_texts

    config = config or LatentsConfig()
    run_dir = Path(run_dir)
    run_config = read_config(run_dir)
    data = PreparedDataset(dataset)
    _check_dataset(run_config, data, run_dir)
    indices = pick_clips(data, config.split, config.per_bucket, config.seed)
    encoder, decoder, aligner = _load(run_dir, run_config, config.device)
    names = {k: run_config.get(k, {}).get("name", "?") for k in ("encoder", "decoder", "aligner")}
    buckets = np.array([data.records[i].bucket for i in indices])
    result = LatentsResult([], clips=len(indices), buckets=list(data.buckets))

    z_v = _video_latents(decoder, data, indices, config)  # [N, *latent_shape]
    real = Cloud("real: E_v(x)", "real", z_v.flatten(1).numpy(), buckets)
    if encoder is None:
        result.notes.append(f"text and shared spaces: {run_dir} is a stage-1 run (no text encoder, no aligner)")
        result.spaces.append(Space("video", f"Video latent space of {names['decoder']}", [real]))
        return result
    z_t = embed_texts(encoder, data.captions(indices)).pooled.float()  # [N, d_t]
    text = Cloud("caption: z_t", "text", z_t.numpy(), buckets)
    result.spaces.append(Space("text", f"Text latent space of {names['encoder']}", [text]))
    if aligner is None:
        result.notes.append(f"shared space and mapped video latents: {run_dir} is a {run_config.get('stage')} run "
                            "(no aligner)")  # fmt: skip
        result.spaces.append(Space("video", f"Video latent space of {names['decoder']}", [real]))
        return result

    mapped, text_shared, video_shared = _align(aligner, z_t, z_v, config)
    if text_shared is None or video_shared is None:
        result.notes.append(f"shared space: the {names['aligner']} aligner has none (it maps text straight to the "
                            "video latent)")  # fmt: skip
    else:
        result.spaces.append(Space("shared", f"Shared semantic space of {names['aligner']}", [
            Cloud("real: E_s(z_v)", "real", video_shared.numpy(), buckets),
            Cloud("mapped: M(z_t)", "mapped", text_shared.numpy(), buckets)]))  # fmt: skip
    arrow = "M(z_t)" if text_shared is None else "G_s(M(z_t))"
    result.spaces.append(Space("video", f"Video latent space of {names['aligner']} on {names['decoder']}",
                               [real, Cloud(f"mapped: {arrow}", "mapped", mapped.numpy(), buckets)]))  # fmt: skip
    return result


def _video_latents(decoder: Any, data: PreparedDataset, indices: np.ndarray, config: LatentsConfig) -> torch.Tensor:
    """E_v(x) of the clips, ``[N, *latent_shape]`` on the CPU."""
    latents = []
    for start in range(0, len(indices), config.batch_size):
        video = torch.stack([clip_to_tensor(data.clips[i]) for i in indices[start : start + config.batch_size]])
        latents.append(decoder.encode(video.to(config.device)).float().cpu())
    return torch.cat(latents)


def _align(aligner: Any, z_t: torch.Tensor, z_v: torch.Tensor,
           config: LatentsConfig) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:  # fmt: skip
    """The aligner's view of the clips: the mapped latents ``[N, d_zv]`` (flattened) and, where it has a
    shared space, M(z_t) and E_s(z_v) ``[N, d_zs]``; all on the CPU."""
    aligner.eval()
    mapped, text_shared, video_shared = [], [], []
    for start in range(0, len(z_t), config.batch_size):
        t = z_t[start : start + config.batch_size].to(config.device)  # [B, d_t]
        v = z_v[start : start + config.batch_size].to(config.device)  # [B, *latent_shape]
        mapped.append(aligner.text_to_latent(t).flatten(1).float().cpu())
        text_shared.append(aligner.text_to_shared(t))  # None without a shared space
        video_shared.append(aligner.latent_to_shared(v))

    def joined(parts: list[Any]) -> torch.Tensor | None:
        return None if parts[0] is None else torch.cat(parts).float().cpu()

    return torch.cat(mapped), joined(text_shared), joined(video_shared)


# --------------------------------------------------------------------------- projections


def project(points: np.ndarray, method: str, config: LatentsConfig) -> tuple[np.ndarray, tuple[str, str], str]:
    """2-D coordinates ``[N, 2]`` of ``points [N, d]``, the axis labels, and what was done.

    Raises ValueError with the reason when the method cannot run on these points (too few of them).
    """
    if method not in METHODS:
        raise T2VError(f"unknown projection method {method!r}; methods: {', '.join(METHODS)}")
    n, d = points.shape
    distinct, inverse = np.unique(points, axis=0, return_inverse=True)
    m = len(distinct)
    counted = f"{m} distinct of {n} points"
    if method == "pca":
        from sklearn.decomposition import PCA

        if min(n, d) < 2:
            raise ValueError(f"PCA to 2-D needs at least 2 points of 2 dimensions, got {n} of {d}")
        pca = PCA(n_components=2, random_state=config.seed)
        coords = pca.fit_transform(points)
        pc1, pc2 = (_percent(100 * r) for r in pca.explained_variance_ratio_)
        return coords, (f"PC 1 ({pc1} of variance)", f"PC 2 ({pc2})"), f"PCA, {counted}"
    if m < 4:
        raise ValueError(f"{METHOD_NAMES[method]} needs at least 4 distinct points, got {m}")
    coords, settings = _tsne(distinct, config) if method == "tsne" else _umap(distinct, config)
    name = METHOD_NAMES[method]
    return coords[inverse.reshape(-1)], (f"{name} 1", f"{name} 2"), f"{settings}, {counted}"


def _percent(value: float) -> str:
    return f"{value:.0f}%" if value >= 10 else f"{value:.2g}%"


def _tsne(points: np.ndarray, config: LatentsConfig) -> tuple[np.ndarray, str]:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    m, d = points.shape
    k = min(config.tsne_pca, m, d)
    reduced = PCA(n_components=k, random_state=config.seed).fit_transform(points) if k < d else points
    perplexity = min(config.perplexity, (m - 1) / 3)
    capped = " (capped: few points)" if perplexity < config.perplexity else ""
    tsne = TSNE(n_components=2, perplexity=perplexity, max_iter=config.tsne_iterations, init="pca",
                learning_rate="auto", random_state=config.seed, n_jobs=1)  # fmt: skip
    coords = tsne.fit_transform(reduced)
    before = f"PCA to {k}, " if k < d else ""
    return coords, f"t-SNE: {before}perplexity {perplexity:.3g}{capped}, {config.tsne_iterations} iterations"


def _umap(points: np.ndarray, config: LatentsConfig) -> tuple[np.ndarray, str]:
    import umap

    neighbors = min(config.umap_neighbors, len(points) - 1)
    with warnings.catch_warnings():  # "n_jobs overridden by random_state", spectral-init fallbacks
        warnings.simplefilter("ignore")
        coords = umap.UMAP(n_components=2, n_neighbors=neighbors, random_state=config.seed).fit_transform(points)
    return np.asarray(coords), f"UMAP: {neighbors} neighbours"


# --------------------------------------------------------------------------- figures


def _bucket_colours(count: int) -> tuple[Any, bool]:
    """A colour map for ``count`` buckets and whether it is categorical (a legend) or not (a colour bar)."""
    from matplotlib import colormaps

    if count <= 10:
        return colormaps["tab10"], True
    if count <= 20:  # tab20's pairs of shades: SyncDraw-MM's two motions of one digit share a hue
        return colormaps["tab20"], True
    return colormaps["turbo"].resampled(count), False


def _short(name: str, limit: int = 34) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def draw(panel: Panel, bucket_names: list[str], path: Path, subtitle: str, config: LatentsConfig) -> Path:
    """Write one panel as a PNG of ``config.figsize × config.dpi`` pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig = Figure(figsize=config.figsize, dpi=config.dpi)
    FigureCanvasAgg(fig)  # the Agg canvas, without touching pyplot's global backend
    ax = fig.add_axes((0.08, 0.11, 0.58, 0.74))
    cmap, categorical = _bucket_colours(len(bucket_names))
    used = sorted({int(b) for cloud in panel.space.clouds for b in cloud.buckets})
    colour = (lambda b: cmap(b % cmap.N)) if categorical else (lambda b: cmap(b))
    styles = {"real": dict(marker="o", s=10, alpha=0.7, linewidths=0),
              "text": dict(marker="o", s=22, alpha=0.6, linewidths=0),
              "mapped": dict(marker="X", s=55, alpha=0.9, edgecolors="black", linewidths=0.5)}  # fmt: skip
    for cloud, coords in zip(panel.space.clouds, panel.coords, strict=True):
        ax.scatter(coords[:, 0], coords[:, 1], c=[colour(int(b)) for b in cloud.buckets], **styles[cloud.kind])
    ax.set_xlabel(panel.axes[0])
    ax.set_ylabel(panel.axes[1])
    ax.tick_params(labelsize=7)
    if panel.method != "pca":  # t-SNE and UMAP units mean nothing
        ax.set_xticklabels([])
        ax.set_yticklabels([])
    fig.suptitle(f"{panel.space.title} — {METHOD_NAMES[panel.method]}", fontsize=12, x=0.02, ha="left", y=0.975)
    fig.text(0.02, 0.895, f"{subtitle}\n{panel.settings}", fontsize=8, color="0.3", va="bottom")

    kinds = [Line2D([], [], linestyle="", color="0.35", label=cloud.label, markersize=8 if cloud.kind == "mapped"
                    else 5, marker=styles[cloud.kind]["marker"], markeredgecolor="black" if cloud.kind == "mapped"
                    else "0.35") for cloud in panel.space.clouds]  # fmt: skip
    top = fig.legend(handles=kinds, loc="upper left", bbox_to_anchor=(0.68, 0.86), fontsize=8, frameon=False)
    if categorical:
        handles = [Patch(color=colour(b), label=_short(bucket_names[b])) for b in used]
        fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.68, 0.86 - 0.045 * (len(kinds) + 1)),
                   fontsize=7, frameon=False, title="bucket", title_fontsize=8, handlelength=1.0,
                   labelspacing=0.25, alignment="left")  # fmt: skip
        fig.add_artist(top)
    else:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import BoundaryNorm

        norm = BoundaryNorm(np.arange(len(bucket_names) + 1) - 0.5, cmap.N)
        cax = fig.add_axes((0.69, 0.11, 0.02, 0.6))
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax)
        ticks = np.unique(np.linspace(0, len(bucket_names) - 1, min(12, len(bucket_names))).round().astype(int))
        bar.set_ticks(ticks.tolist(), labels=[_short(bucket_names[t], 40) for t in ticks])
        bar.ax.tick_params(labelsize=7)
        bar.set_label(f"bucket ({len(bucket_names)})", fontsize=8)
    _save_png(fig, path)
    return path


def _save_png(fig: Any, path: Path, tolerance: int = 24) -> None:
    """The figure as a 256-colour PNG, a third of the size of matplotlib's RGBA file, when max-coverage
    quantization (no dithering) keeps every pixel within ``tolerance`` levels; otherwise as RGB (many
    buckets on a continuous colour map can need more colours)."""
    from PIL import Image

    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
    palette = image.quantize(256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
    error = np.abs(np.asarray(palette.convert("RGB"), dtype=np.int16) - np.asarray(image, dtype=np.int16)).max()
    with atomic_path(path) as tmp:
        (palette if error <= tolerance else image).save(tmp, format="PNG", optimize=True)


def latents(run_dir: str | Path, dataset: str | Path, out: str | Path, config: LatentsConfig | None = None,
            echo: Callable[[str], None] = print) -> LatentsResult:  # fmt: skip
    """Draw every space of ``run_dir`` with every method of ``config`` into ``out/SPACE-METHOD.png``."""
    config = config or LatentsConfig()
    methods = check_methods(config.methods)
    require_viz()
    missing = umap_missing() if "umap" in methods else ""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise T2VError(f"--out {out} is a file; give a folder")
    result = embed(run_dir, dataset, config)
    data_name = PreparedDataset(dataset).name
    drawn = f"up to {config.per_bucket} per bucket" if config.per_bucket else "every clip"
    subtitle = f"{run_dir} on {data_name} {config.split}: {result.clips} clips ({drawn})"
    if missing:
        result.notes.append(f"umap: {missing}")
        methods = tuple(m for m in methods if m != "umap")
    for space in result.spaces:
        points = np.concatenate([cloud.points for cloud in space.clouds])
        sizes = np.cumsum([len(cloud.points) for cloud in space.clouds])[:-1]
        for method in methods:
            start = time.perf_counter()
            try:
                coords, axes, settings = project(points, method, config)
            except ValueError as exc:
                result.notes.append(f"{space.key} {method}: {exc}")
                continue
            panel = Panel(space, method, np.split(coords, sizes), axes, settings)
            panel.path = draw(panel, result.buckets, out / f"{space.key}-{method}.png", subtitle, config)
            result.panels.append(panel)
            echo(f"{panel.path}  ({METHOD_NAMES[method]}, {time.perf_counter() - start:.1f} s)")
    return result
