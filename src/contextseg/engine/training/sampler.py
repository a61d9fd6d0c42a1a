"""An endless, rank-sharded, resumable sampler for iteration-based training, and per-draw seeding.

Training randomness comes from two places: the augmentation of each sample and the model's own
(dropout, HANet's position noise). The sampler numbers every draw; `SeededDraws` seeds each
draw's augmentation from ``(seed, draw number)`` in a forked RNG, so the data stream depends on
neither the DataLoader's worker processes nor the global RNG, and a resumed run draws exactly the
samples, with exactly the augmentations, the interrupted one would have drawn next. The model's
randomness uses the global RNG, which the checkpoint saves and the trainer restores.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["InfiniteSampler", "SeededDraws"]


class InfiniteSampler(Sampler):
    """Yields dataset indices forever, one shuffled epoch after another.

    Each epoch's permutation is seeded by ``seed + epoch`` and split over ranks like
    ``DistributedSampler`` (padded by wrap-around so every rank draws equally many). ``start`` is
    the number of samples this rank has already drawn, so a resumed run continues with exactly the
    samples the interrupted one would have seen next. With ``numbered=True`` each item is
    ``(index, draw)``, ``draw`` being the draw's position in the whole run over all ranks.
    """

    def __init__(self, size: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0, numbered: bool = False) -> None:
        if size < 1:
            raise ValueError("the training dataset is empty")
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self.numbered = numbered
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

    def __iter__(self) -> Iterator:
        epoch, offset = divmod(self.start, self.per_rank)
        position = self.start
        while True:
            for index in self._epoch(epoch)[offset:]:
                yield (index, position * self.world_size + self.rank) if self.numbered else index
                position += 1
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # DataLoader only uses this for its own bookkeeping
        return self.per_rank


class SeededDraws(Dataset):
    """``dataset[index]`` with the global torch RNG seeded from ``(seed, draw)`` for the call and
    restored afterwards: the keys are the ``(index, draw)`` pairs of a numbered sampler.

    Shape:
        whatever ``dataset[index]`` returns.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, draw = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + draw) % (2**63 - 1))
            return self.dataset[index]
