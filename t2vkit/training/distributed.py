"""Data-parallel training across processes started by ``torchrun`` (one per GPU, or CPU processes
with gloo).

Gradients are averaged with a bucketed all-reduce after each backward pass, rather than through
the ``DistributedDataParallel`` wrapper: a stage-1 step runs three networks under two optimizers
(a discriminator is used in both updates), which DDP's one-forward-one-backward bookkeeping and
unused-parameter checks make fragile. The result is the same synchronous data parallelism; only
the communication is not overlapped with the backward pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from t2vkit.errors import T2VError


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Context:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise T2VError("--device cuda was asked for, but PyTorch sees no CUDA device")
    if device not in ("auto", "cuda", "cpu"):
        raise T2VError(f"--device must be auto, cuda or cpu, got {device!r}")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Context(rank=rank, world=world, device=chosen)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(params: Iterable[torch.nn.Parameter], world: int) -> None:
    """All-reduce and average the gradients of ``params`` across processes, in one flat bucket per dtype."""
    if world <= 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    for dtype in {g.dtype for g in grads}:
        group = [g for g in grads if g.dtype == dtype]
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in group:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def average_buffers(modules: Iterable[torch.nn.Module], world: int) -> None:
    """Average floating-point buffers (BatchNorm running statistics) so every process saves the same model."""
    if world <= 1:
        return
    for module in modules:
        for buf in module.buffers():
            if buf.is_floating_point():
                dist.all_reduce(buf)
                buf /= world


def broadcast_parameters(modules: Iterable[torch.nn.Module]) -> None:
    """Start every process from rank 0's weights."""
    if not dist.is_initialized():
        return
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
