"""What ``t2vkit evaluate`` returns, and the Markdown table it writes, laid out like the paper's
Table 1 (stage-1 runs: PSNR, SSIM, LPIPS, DISTS, FVD, KVD) and Table 2 (text-to-video runs: the
bucket metrics, FVD, KVD), with t2vkit's own columns after them: the semantic probe's faithfulness
and its accuracy on real clips, and the diversity scores."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Report:
    run: str
    stage: str
    dataset: str
    split: str
    clips: int
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # name → {"mean", "std"} (std optional)
    skipped: dict[str, str] = field(default_factory=dict)  # name → why it was not computed
    # name → the metrics of a trivial answer (a median clip), or FVD/KVD of real clips of another split
    references: dict[str, dict[str, float]] = field(default_factory=dict)
    probe: dict[str, Any] = field(default_factory=dict)  # per-task accuracy: "generated", "real"; the tasks
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


COLUMNS = ["psnr", "ssim", "b_psnr", "b_ssim", "lpips", "dists", "b_lpips", "b_dists", "fvd", "kvd", "faithfulness",
           "probe_real", "diversity", "diversity_real", "diversity_ratio"]  # fmt: skip
_NAMED = {"diversity": "diversity", "diversity_real": "diversity (real)", "diversity_ratio": "diversity ratio ↑",
          "faithfulness": "probe faithfulness ↑", "probe_real": "probe acc. (real)"}  # fmt: skip
_ARROWS = {"psnr": "↑", "ssim": "↑", "lpips": "↓", "dists": "↓", "fvd": "↓", "kvd": "↓"}


def order(name: str) -> int:
    return COLUMNS.index(name) if name in COLUMNS else len(COLUMNS)


def label(name: str) -> str:
    if name in _NAMED:
        return _NAMED[name]
    base = name.removeprefix("b_")
    return f"{'B-' if name.startswith('b_') else ''}{base.upper()} {_ARROWS.get(base, '')}".strip()


def reference_label(name: str) -> str:
    """``split_median`` → "split median clip"; ``real_val`` → "real val clips" (FVD/KVD's floor)."""
    if name.startswith("real_"):
        return f"real {name.removeprefix('real_')} clips"
    return f"{name.replace('_', ' ')} clip"


def cell(value: dict[str, float], mean_format: str = ".3g", std_format: str = ".2g") -> str:
    """``mean ± std``, or the mean alone where a metric has no spread (one FVD for a whole set)."""
    std = value.get("std")
    mean = format(value["mean"], mean_format)
    return mean if std is None or math.isnan(std) else f"{mean} ± {format(std, std_format)}"


def markdown(reports: list[Report]) -> str:
    """A table laid out like the paper's (one row per run), then one row per trivial reference."""
    names = sorted({m for r in reports for m in r.metrics} | {m for r in reports for m in r.skipped}, key=order)
    lines = ["| run | " + " | ".join(label(n) for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    for r in reports:
        cells = [cell(r.metrics[n]) if n in r.metrics else "—" for n in names]
        lines.append(f"| {Path(r.run).name} | " + " | ".join(cells) + " |")
    for reference in sorted({name for r in reports for name in r.references}):
        values = next(r.references[reference] for r in reports if reference in r.references)
        cells = [f"{values[n]:.3g}" if n in values else "—" for n in names]
        lines.append(f"| *{reference_label(reference)}* | " + " | ".join(cells) + " |")
    skipped = {f"{label(n)}: {why}" for r in reports for n, why in r.skipped.items()}
    notes = [f"\n— not computed: {'; '.join(sorted(skipped))}"] if skipped else []
    return "\n".join(lines + notes) + "\n"
