"""``t2vkit bench``: the measuring lives in :mod:`t2vkit.bench`; this module parses options and draws tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from t2vkit.errors import T2VError


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def parse_ints(text: str, option: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise T2VError(f"{option} takes comma-separated whole numbers such as 1,8; got {text!r}") from None


def bench(
    run_dir: Path = typer.Argument(..., help="A trained stage-2 (align) or diffusion run directory."),
    backends: str = typer.Option("torch,onnx,trt", "--backends", help="Comma-separated: torch, onnx, trt."),
    batch: str = typer.Option("1,8", "--batch", help="Comma-separated batch sizes (prompts per call)."),
    repeats: int = typer.Option(10, "--repeats", help="Timed calls per measurement (after the warm-up)."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed calls before each measurement."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda, for torch and onnx (trt always runs on the GPU)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch and onnx (default: all CPUs)."),
    steps: int | None = typer.Option(None, "--steps", help="Diffusion: DDIM steps end to end (default 25)."),
    fp16: bool = typer.Option(False, "--fp16", help="trt: the fp16 engines (from `t2vkit export --trt --fp16`)."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="trt: replay the UNet step as a CUDA graph."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the report as JSON."),
) -> None:
    """Latency per component and end to end (prompt → uint8 frames, model loaded), videos/s, load time and
    peak memory, for each backend side by side. Each backend runs in its own process; one that cannot run
    here is listed as skipped, with the reason.

    Components: text_encoder (tokenizer included), mapping (align runs) or one unet step (diffusion runs),
    decoder. Latencies are median (min–max) over --repeats calls. Peak memory: the process's peak RSS, and
    on a GPU the device memory the backend allocated.

    [dim]Examples:[/]
      t2vkit bench runs/progressive --backends torch,onnx --batch 1,8
      t2vkit bench runs/diffusion --steps 10 --batch 1 --json bench.json
      t2vkit bench runs/progressive --device cuda --backends torch,onnx,trt --fp16 --batch 1,8
    """
    from t2vkit.bench import run_bench
    from t2vkit.cli import console
    from t2vkit.fsutil import atomic_write_json

    options = {"steps": steps} if steps is not None else {}
    names = [b.strip() for b in backends.split(",") if b.strip()]
    batches = parse_ints(batch, "--batch")
    with console.status("") as status:
        report = run_bench(run_dir, names, batches, repeats, warmup, device, threads, options, fp16, cuda_graph,
                           on_start=lambda name: status.update(f"benchmarking {name} ..."))  # fmt: skip
    console.print(latency_table(report))
    console.print(backend_table(report))
    if json_path is not None:
        atomic_write_json(json_path, report)
        console.print(f"wrote {json_path}")


def _num(ms: float) -> str:
    """Three significant figures or so: 0.461, 23.9, 317."""
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}" if ms >= 0.1 else f"{ms:.3f}"


def _ms(figures: dict[str, float]) -> str:
    return f"{_num(figures['median_ms'])} ({_num(figures['min_ms'])}–{_num(figures['max_ms'])})"


def latency_table(report: dict[str, Any]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    measured = {name: r for name, r in report["backends"].items() if r.get("status") == "ok"}
    components = list(dict.fromkeys(c for r in measured.values() for b in r["batches"].values()
                                    for c in b["components"]))  # fmt: skip
    threads = f"{report['threads']} thread" + ("s" if report["threads"] != 1 else "")
    table = Table(title=f"latency in ms, median (min–max) of {report['repeats']}: {escape(report['run'])} "
                        f"({report['stage']}, {report['device']}, {threads})")  # fmt: skip
    for column in ("backend", "batch", *components, "end to end", "videos/s", "× torch"):
        table.add_column(column.replace("_", " "), justify="left" if column == "backend" else "right")
    for name, result in measured.items():
        for batch, figures in result["batches"].items():
            cells = [_ms(figures["components"][c]) if c in figures["components"] else "" for c in components]
            ratio = figures.get("speedup_vs_torch", {}).get("end_to_end")
            table.add_row(name, batch, *cells, _ms(figures["end_to_end"]), f"{figures['videos_per_s']:.2f}",
                          f"{ratio:.2f}" if ratio else "")  # fmt: skip
    return table


def backend_table(report: dict[str, Any]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="load time and peak memory")
    for column in ("backend", "status", "load s", "peak RSS MB", "peak GPU MB", "details"):
        table.add_column(column, justify="right" if column in ("load s", "peak RSS MB", "peak GPU MB") else "left")
    for name, result in report["backends"].items():
        if result.get("status") != "ok":
            table.add_row(name, result["status"], "", "", "", escape(result.get("reason", "")))
            continue
        skip = {"status", "stage", "batches", "load_s", "peak_rss_mb", "peak_gpu_mb"}
        details = ", ".join(f"{k} {', '.join(v) if isinstance(v, list) else v}"
                            for k, v in result.items() if k not in skip)  # fmt: skip
        gpu = result.get("peak_gpu_mb")
        table.add_row(name, "ok", f"{result['load_s']:.2f}", f"{result['peak_rss_mb']:.0f}",
                      f"{gpu:.0f}" if gpu is not None else "", escape(details))  # fmt: skip
    return table
