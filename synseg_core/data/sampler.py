"""A DistributedSampler that can start part-way through an epoch (for exact resumption)."""
from __future__ import annotations

from itertools import islice
from typing import Iterator, Sized

import torch.distributed as dist
from torch.utils.data import DistributedSampler


class ResumableDistributedSampler(DistributedSampler):
    """torch's DistributedSampler (same per-rank split and shuffle) plus a start position, yielding
    ``(epoch, index)`` pairs that the map-style caption datasets accept.

    Without an initialised process group it defaults to one replica, so one code path serves single-process
    and DDP training.

    Args:
        dataset: the map-style dataset.
        num_replicas: world size (default: from torch.distributed, else 1).
        rank: this process's rank (default: from torch.distributed, else 0).
        shuffle: shuffle per epoch with `seed` + epoch.
        seed: shuffle seed, the same on every rank.
        drop_last: drop the tail instead of padding so every rank gets the same count.
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` from its beginning."""
        self.set_position(epoch, 0)

    def set_position(self, epoch: int, start: int) -> None:
        """Resume `epoch` at this rank's `start`-th sample (batches consumed x batch size).

        Raises:
            ValueError: `start` outside [0, samples per rank].
        """
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"sampler start {start} is outside [0, {self.num_samples}] (samples per rank)")
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, i) for i in islice(super().__iter__(), self.start, None))

    def __len__(self) -> int:
        return self.num_samples - self.start
