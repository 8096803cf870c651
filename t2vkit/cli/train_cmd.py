"""``t2vkit train``: the three training stages."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    stage: str = typer.Option(..., "--stage", help="video (autoencoder), align (text→video), diffusion (sampler)."),
    dataset: Path = typer.Option(..., "--dataset", help="A prepared data set folder (t2vkit data prepare)."),
    out: Path = typer.Option(..., "--out", help="The run directory to write (or to continue, with --resume)."),
    decoder: str | None = typer.Option(None, help="Stage video: the video autoencoder (wae3d, unetldm, vae)."),
    aligner: str | None = typer.Option(None, help="Stage align: progressive, clip, imagebind, codi, direct, ..."),
    encoder: str | None = typer.Option(None, help="Stage align: the text encoder (default: the preset's)."),
    video: Path | None = typer.Option(None, "--video", help="Stages align, diffusion: the stage-1 run directory."),
    sampler: str | None = typer.Option(None, "--sampler", help="Stage diffusion: the sampler to train (diffusion)."),
    preset: str = typer.Option("quick", help="paper (the paper's hyperparameters), quick (a 2-core CPU), or a .toml."),
    config: Path | None = typer.Option(None, "--config", help="A TOML file layered over the preset."),
    set_: list[str] = typer.Option([], "--set", help="Override one value of the resolved config: key=value."),
    max_steps: int | None = typer.Option(None, help="Stop after this many steps in all."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out where it stopped."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cuda or cpu."),
    precision: str | None = typer.Option(None, help="fp32 or bf16 (autocast; for GPUs)."),
    workers: int | None = typer.Option(None, help="Data-loading worker processes."),
) -> None:
    """Train a stage; progress, validation samples and checkpoints go to --out.

    Every run writes its resolved config to --out/config.json; --resume continues exactly where an
    interrupted run stopped (Ctrl-C saves first) and refuses a different config. Multi-GPU or
    multi-node: launch the same command with torchrun.

    [dim]Examples:[/]
      t2vkit train --stage video --dataset data/syncdraw --decoder wae3d --out runs/wae3d
      t2vkit train --stage video --dataset data/syncdraw --decoder wae3d --preset paper --out runs/wae3d-paper
      t2vkit train --stage video --dataset data/syncdraw --decoder unetldm --set decoder.latent=spatial --out runs/ldm
      t2vkit train --stage video --dataset data/syncdraw --decoder wae3d --out runs/wae3d --resume
      t2vkit train --stage align --dataset data/syncdraw --video runs/wae3d --aligner progressive --out runs/prog
      t2vkit train --stage diffusion --dataset data/syncdraw --video runs/ldm-spatial --out runs/diffusion
      t2vkit train --stage diffusion --dataset data/syncdraw --out runs/vdm   [dim]# pixel space[/]
      torchrun --nproc_per_node=2 -m t2vkit train --stage video --dataset data/syncdraw --decoder wae3d --out runs/ddp
    """
    from t2vkit.cli import console
    from t2vkit.training.config import Sources
    from t2vkit.training.engine import TrainingInterrupted
    from t2vkit.training.run import TrainRequest
    from t2vkit.training.run import train as run_training

    overrides = list(set_)
    if max_steps is not None:
        overrides.append(f"train.max_steps={max_steps}")
    if precision is not None:
        overrides.append(f"train.precision={precision}")
    if workers is not None:
        overrides.append(f"train.num_workers={workers}")
    request = TrainRequest(stage=stage, dataset=dataset, out=out, decoder=decoder, aligner=aligner, encoder=encoder,
                           video=video, sampler=sampler, resume=resume, device=device,
                           sources=Sources(preset=preset, config_file=config, overrides=tuple(overrides)))  # fmt: skip
    try:
        summary, _ = run_training(request)
    except TrainingInterrupted as stop:
        console.print(f"[yellow]{stop}[/]")
        raise typer.Exit(130) from None
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return
    best = summary.best or {}
    shown = ", ".join(f"{k} {v:.4g}" for k, v in best.items() if k != "step" and not k.endswith("_std"))
    console.print(f"trained {summary.step}/{summary.total_steps} steps in {summary.seconds:.0f} s "
                  f"({summary.clips_per_second:.1f} clips/s); run directory {out}")  # fmt: skip
    if best:
        console.print(f"best validation (step {best['step']}): {shown}")
