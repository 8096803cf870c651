"""The training engine every stage shares: data order, optimizer updates, checks, progress,
validation, samples, checkpoints, resume and data parallelism.

A stage is a :class:`Task`: its networks, which optimizer trains which of them, one training step,
and its validation. The engine owns everything else. Run directory::

    RUN/config.json                  the resolved config (written by the caller)
    RUN/NAME.safetensors             the exported networks (the best by validation, else the last)
    RUN/checkpoints/{last,best}/     everything needed to resume (see t2vkit.training.state)
    RUN/metrics.jsonl                training losses and validation metrics, one JSON object a line
    RUN/samples/step_NNNNNNN.{png,mp4}
    RUN/tensorboard/                 scalars, when the tensorboard package is installed
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2vkit.checkpoint import save_component
from t2vkit.errors import T2VError
from t2vkit.log import log
from t2vkit.training import distributed
from t2vkit.training.config import TrainConfig
from t2vkit.training.sampler import EpochBatches
from t2vkit.training.state import load_checkpoint, save_checkpoint


class NonFiniteLoss(T2VError):
    """A loss term became NaN or infinite: the run stops before the bad gradient is applied."""


class TrainingInterrupted(T2VError):
    """Ctrl-C: the last checkpoint was saved and the run can be resumed."""


class Task(ABC):
    """One training stage, as the engine drives it."""

    #: every network trained or saved, by the name of its checkpoint file
    modules: dict[str, torch.nn.Module]
    #: networks written at the top of the run directory for later stages and generation
    exports: tuple[str, ...] = ()
    #: validation metric that picks the best checkpoint
    best_metric: str = "psnr"
    best_higher: bool = True  # False when lower is better (a loss)

    @abstractmethod
    def optimized(self) -> dict[str, list[torch.nn.Module]]:
        """Optimizer name → the modules it trains (each gets its own Adam)."""

    @abstractmethod
    def train_step(self, batch: dict[str, Any], update: Update) -> dict[str, float]:
        """One step: compute losses, call ``update(optimizer_name, terms)``; return logged values."""

    @abstractmethod
    def validate(self, batches: Iterable[dict[str, Any]]) -> dict[str, float]: ...

    def samples(self, batch: dict[str, Any]) -> tuple[list[np.ndarray], int]:
        """Videos (uint8 ``[T, H, W, C]``) to show after a validation, and how many per row."""
        return [], 1

    def notes(self) -> list[str]:
        """Facts about this run worth recording in its config (e.g. a skipped loss term)."""
        return []

    def exported(self) -> dict[str, torch.nn.Module]:
        """What to write at the top of the run directory, by file name (default: ``exports``)."""
        return {name: self.modules[name] for name in self.exports}

    def after_update(self) -> None:  # noqa: B027  (optional hook)
        """Called after every training step (e.g. to update EMA weights)."""


class Update:
    """Applies one optimizer's update from named loss terms, with the engine's checks."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], params: dict[str, list[torch.nn.Parameter]],
                 grad_clip: float, world: int) -> None:  # fmt: skip
        self.optimizers, self.params, self.grad_clip, self.world = optimizers, params, grad_clip, world
        self.step = 0
        self.lr: float | None = None  # set by the trainer each step; None keeps the optimizer's own

    def __call__(self, name: str, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        if not terms:
            return {}
        for term, value in terms.items():
            if not torch.isfinite(value).all():
                raise NonFiniteLoss(f"loss term {term!r} is {value.item()} at step {self.step + 1}; the run "
                                    "stopped before applying it (lower train.lr, or check the data)")  # fmt: skip
        total = torch.stack([v.float() for v in terms.values()]).sum()
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        distributed.average_gradients(self.params[name], self.world)
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params[name], self.grad_clip)
        if self.lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = self.lr
        optimizer.step()
        return {term: float(value.detach()) for term, value in terms.items()}


@contextlib.contextmanager
def frozen(modules: Iterable[torch.nn.Module]) -> Iterator[None]:
    """Stop gradients into ``modules`` for a while (e.g. discriminators during the generator's update)."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class _StopOnCtrlC:
    """The first Ctrl-C asks the loop to stop after the current step (which then saves); a second
    one aborts at once, saving nothing, so a checkpoint never holds half a step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stopping after this step to save a checkpoint (Ctrl-C again to abort without saving)")

    def __enter__(self) -> _StopOnCtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def seed_step(seed: int, step: int, rank: int) -> None:
    """Every step draws from a generator seeded by (seed, step, rank): a resumed run draws the same numbers."""
    torch.manual_seed((seed * 1_000_003 + step * 7_919 + rank) % (2**63))


def to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.dim() == 5:
                value = value.contiguous(memory_format=torch.channels_last_3d)
        out[key] = value
    return out


@dataclass
class Summary:
    step: int
    total_steps: int
    seconds: float
    clips_per_second: float
    best: dict[str, float] | None


class Trainer:
    def __init__(self, task: Task, config: TrainConfig, run_dir: Path, train: torch.utils.data.Dataset,
                 val: torch.utils.data.Dataset | None, ctx: distributed.Context) -> None:  # fmt: skip
        self.task, self.cfg, self.run, self.ctx = task, config, Path(run_dir), ctx
        self.train_data, self.val_data = train, val
        self.per_epoch = EpochBatches.per_epoch(len(train), config.batch_size, ctx.world)
        if self.per_epoch == 0:
            raise T2VError(f"the training split has {len(train)} clips, fewer than one batch of "
                           f"{config.batch_size} × {ctx.world} process(es); lower train.batch_size")  # fmt: skip
        self.total = config.max_steps if config.max_steps is not None else config.epochs * self.per_epoch
        for module in task.modules.values():
            module.to(ctx.device)
            if config.channels_last:
                module.to(memory_format=torch.channels_last_3d)
        distributed.broadcast_parameters(task.modules.values())
        groups = task.optimized()
        # Parameters that do not require gradients (frozen parts, EMA targets) are never optimized.
        self.params = {
            name: [p for m in mods for p in m.parameters() if p.requires_grad] for name, mods in groups.items()
        }
        self.optimizers = {
            name: torch.optim.Adam(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
            for name, params in self.params.items()
        }
        if config.compile:
            for modules in groups.values():
                for module in modules:
                    module.compile()
        self.update = Update(self.optimizers, self.params, config.grad_clip, ctx.world)
        self.best: dict[str, float] | None = None
        self.tensorboard = None
        self._running: dict[str, list[float]] = defaultdict(list)  # logged values since the last log line

    # ------------------------------------------------------------------ checkpoints

    def _progress(self, step: int) -> dict[str, Any]:
        return {"step": step, "total_steps": self.total, "best": self.best}

    def save(self, which: str, step: int) -> None:
        distributed.average_buffers(self.task.modules.values(), self.ctx.world)
        if self.ctx.is_main:
            save_checkpoint(self.run / "checkpoints" / which, self.task.modules, self.optimizers, self._progress(step))
        distributed.barrier()

    def export(self) -> None:
        if self.ctx.is_main:
            for name, module in self.task.exported().items():
                save_component(self.run, name, module)

    def resume(self) -> int:
        progress = load_checkpoint(self.run / "checkpoints" / "last", self.task.modules, self.optimizers)
        self.best = progress.get("best")
        return int(progress["step"])

    # ------------------------------------------------------------------ the loop

    def fit(self, resume: bool = False) -> Summary:
        start_step = self.resume() if resume else 0
        if start_step >= self.total:
            log.info(f"the run is already at step {start_step} of {self.total}; nothing to train")
        self._open_tensorboard()
        began, clips = time.perf_counter(), 0
        step = start_step
        with self._progress_bar(start_step) as bar, _StopOnCtrlC() as ctrl_c:
            while step < self.total:
                epoch, first = divmod(step, self.per_epoch)
                for batch in self._loader(epoch, first):
                    seed_step(self.cfg.seed, step, self.ctx.rank)
                    self.update.step = step
                    self.update.lr = self.cfg.learning_rate(step, self.total)
                    batch = to_device(batch, self.ctx.device, self.cfg.channels_last)
                    with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16,
                                        enabled=self.cfg.precision == "bf16"):  # fmt: skip
                        logged = self.task.train_step(batch, self.update)
                    self.task.after_update()
                    step += 1
                    clips += len(batch["index"]) * self.ctx.world
                    self._log(step, logged, clips / max(time.perf_counter() - began, 1e-9), bar)
                    if self._any_rank(ctrl_c.requested):
                        self.save("last", step)
                        raise TrainingInterrupted(
                            f"interrupted at step {step}; saved {self.run / 'checkpoints' / 'last'} "
                            "(run the same command with --resume to continue)"
                        )
                    # validate before saving "last", so that its record of the best step is current
                    if step % self.cfg.eval_every == 0 and step < self.total:
                        self.evaluate(step)
                    if step % self.cfg.save_every == 0 and step < self.total:
                        self.save("last", step)
                    if step >= self.total:
                        break
        if step > start_step or not (self.run / "checkpoints" / "last").exists():
            self.evaluate(step)
            self.save("last", step)
        if self.best is None:  # no validation split: export the final weights
            self.export()
        seconds = time.perf_counter() - began
        return Summary(step, self.total, seconds, clips / max(seconds, 1e-9), self.best)

    def _any_rank(self, flag: bool) -> bool:
        """True on every process if ``flag`` is set on any (so all ranks stop at the same step)."""
        if self.ctx.world == 1:
            return flag
        value = torch.tensor([int(flag)], device=self.ctx.device)
        torch.distributed.all_reduce(value)
        return bool(value.item())

    def _loader(self, epoch: int, first: int) -> torch.utils.data.DataLoader:
        sampler = EpochBatches(len(self.train_data), self.cfg.batch_size, self.cfg.seed, epoch, first,
                               self.ctx.rank, self.ctx.world)  # fmt: skip
        workers = self.cfg.num_workers
        return torch.utils.data.DataLoader(self.train_data, batch_sampler=sampler, num_workers=workers,
                                           pin_memory=self.ctx.device.type == "cuda")  # fmt: skip

    # ------------------------------------------------------------------ validation and samples

    def evaluate(self, step: int) -> None:
        """Validate on rank 0, write samples, keep the best checkpoint and export it."""
        improved = False
        if self.ctx.is_main and self.val_data is not None and len(self.val_data) > 0:
            for module in self.task.modules.values():
                module.eval()
            try:
                metrics = self.task.validate(self._val_batches())
                first = next(iter(self._val_batches()))
                videos, columns = self.task.samples(first)
            finally:
                for module in self.task.modules.values():
                    module.train()
            self._write_metrics({"step": step, "val": metrics})
            if videos:
                self._write_samples(step, videos, columns)
            sign = 1.0 if self.task.best_higher else -1.0
            score = sign * metrics.get(self.task.best_metric, sign * -math.inf)
            if self.best is None or score > sign * self.best.get(self.task.best_metric, sign * -math.inf):
                self.best = {"step": step, **metrics}
                improved = True
        flag = torch.tensor([int(improved)], device=self.ctx.device)
        if self.ctx.world > 1:
            torch.distributed.broadcast(flag, src=0)
        if flag.item():
            self.save("best", step)
            self.export()

    def _val_batches(self) -> Iterator[dict[str, Any]]:
        assert self.val_data is not None
        n = min(len(self.val_data), self.cfg.val_clips)
        subset = torch.utils.data.Subset(self.val_data, range(n))
        loader = torch.utils.data.DataLoader(subset, batch_size=self.cfg.batch_size, num_workers=0)
        for batch in loader:
            yield to_device(batch, self.ctx.device, self.cfg.channels_last)

    def _write_samples(self, step: int, videos: list[np.ndarray], columns: int) -> None:
        from t2vkit.video_io import contact_sheet, tile_videos, write_mp4, write_png

        folder = self.run / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        write_png(folder / f"step_{step:07d}.png", contact_sheet(videos))
        write_mp4(folder / f"step_{step:07d}.mp4", tile_videos(videos, columns))

    # ------------------------------------------------------------------ logging

    def _log(self, step: int, logged: dict[str, float], rate: float, bar: Any) -> None:
        for key, value in logged.items():
            self._running[key].append(value)
        if not self.ctx.is_main:
            return
        if step % self.cfg.log_every == 0 or step == self.total:
            means = {k: sum(v) / len(v) for k, v in self._running.items()}
            self._running.clear()
            self._write_metrics({"step": step, "clips_per_s": round(rate, 2), "lr": self.update.lr, "train": means})
            shown = " ".join(f"{k} {v:.3g}" for k, v in list(means.items())[:6])
            bar.update(bar.task_ids[0], info=f"{shown}  {rate:.1f} clips/s")
        bar.update(bar.task_ids[0], completed=step)

    def _write_metrics(self, record: dict[str, Any]) -> None:
        if not self.ctx.is_main:
            return
        with (self.run / "metrics.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for group in ("train", "val"):
                for key, value in record.get(group, {}).items():
                    self.tensorboard.add_scalar(f"{group}/{key}", value, record["step"])

    def _open_tensorboard(self) -> None:
        if not self.ctx.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return  # the tensorboard package is optional
        self.tensorboard = SummaryWriter(str(self.run / "tensorboard"))

    @contextlib.contextmanager
    def _progress_bar(self, start: int) -> Iterator[Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from t2vkit.cli import err_console

        columns = (TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), TextColumn("{task.fields[info]}"))  # fmt: skip
        bar = Progress(*columns, console=err_console, disable=not self.ctx.is_main)
        bar.add_task("train", total=self.total, completed=start, info="")
        with bar:
            yield bar
        if self.tensorboard is not None:
            self.tensorboard.close()
