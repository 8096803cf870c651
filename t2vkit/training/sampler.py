"""A batch sampler whose order is a pure function of (seed, epoch): a resumed run starts at the
exact batch where the interrupted one stopped, and each process takes its own share of every
global batch."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class EpochBatches(torch.utils.data.Sampler[list[int]]):
    """Index batches of one epoch, from batch ``start`` on.

    Every epoch shuffles ``n`` items with a generator seeded by (seed, epoch) and cuts them into
    global batches of ``batch_size × world`` (the remainder is dropped); process ``rank`` gets the
    ``rank``-th slice of each.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0,
                 rank: int = 0, world: int = 1) -> None:  # fmt: skip
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.start, self.rank, self.world = start, rank, world

    @staticmethod
    def per_epoch(n: int, batch_size: int, world: int = 1) -> int:
        return n // (batch_size * world)

    def __len__(self) -> int:
        return max(self.per_epoch(self.n, self.batch_size, self.world) - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        global_batch = self.batch_size * self.world
        for b in range(self.start, self.per_epoch(self.n, self.batch_size, self.world)):
            first = b * global_batch + self.rank * self.batch_size
            yield order[first : first + self.batch_size]
