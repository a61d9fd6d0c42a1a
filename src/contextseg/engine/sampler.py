"""An endless, rank-sharded, resumable sampler for iteration-based training."""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["InfiniteSampler"]


class InfiniteSampler(Sampler[int]):
    """Yields dataset indices forever, one shuffled epoch after another.

    Each epoch's permutation is seeded by ``seed + epoch`` and split over ranks like
    ``DistributedSampler`` (padded by wrap-around so every rank draws equally many). ``start`` is
    the number of samples this rank has already drawn, so a resumed run continues with exactly the
    samples the interrupted one would have seen next.
    """

    def __init__(self, size: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        if size < 1:
            raise ValueError("the training dataset is empty")
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self.per_rank = math.ceil(size / world_size)

    def _epoch(self, epoch: int) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = self.per_rank * self.world_size
        order = (order * math.ceil(total / self.size))[:total]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            yield from self._epoch(epoch)[offset:]
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # DataLoader only uses this for its own bookkeeping
        return self.per_rank
