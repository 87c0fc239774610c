"""A DataLoader over any caption dataset with one way to resume: `set_position(epoch, batches_consumed)`."""
from __future__ import annotations

from typing import Iterator

from torch.utils.data import DataLoader

from .build import CaptionDataset
from .collate import CaptionBatch, CaptionCollator
from .sampler import ResumableDistributedSampler
from .shards import WebCaptionDataset


class CaptionLoader:
    """Batches of `CaptionBatch` from a map-style or webdataset caption dataset, per rank.

    Map-style datasets go through a `ResumableDistributedSampler` (per-rank split from torch.distributed);
    webdataset shards are split by the dataset itself.

    Args:
        dataset: a dataset from `build_caption_dataset`.
        batch_size: items per batch and rank (skipped items leave a batch smaller).
        image_size: S, for the shape of an all-skipped batch.
        num_workers: DataLoader worker processes (resuming needs the same number as before).
        shuffle: shuffle map-style datasets per epoch.
        seed: sampler shuffle seed.
        drop_last: map-style: drop the last incomplete batch and the per-rank padding.
        pin_memory: pin batches for faster host-to-GPU copies.
    """

    def __init__(self, dataset: CaptionDataset, batch_size: int, image_size: int, *, num_workers: int = 0,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False, pin_memory: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.sampler = None
        if isinstance(dataset, WebCaptionDataset):
            dataset.check_workers(num_workers)
        else:
            self.sampler = ResumableDistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, num_workers=num_workers,
                                 collate_fn=CaptionCollator(image_size), pin_memory=pin_memory,
                                 drop_last=drop_last and self.sampler is not None)

    def set_position(self, epoch: int, batches_consumed: int = 0) -> None:
        """Make the next iteration start at batch `batches_consumed` of `epoch` (0 = the epoch's start)."""
        if self.sampler is not None:
            # The epoch's last batch may have been partial: never start past the end.
            self.sampler.set_position(epoch, min(batches_consumed * self.batch_size, self.sampler.num_samples))
        else:
            self.dataset.set_position(epoch, batches_consumed, self.batch_size)

    def __iter__(self) -> Iterator[CaptionBatch]:
        return iter(self.loader)

    def __len__(self) -> int:
        """Batches left in this rank's epoch (map-style only).

        Raises:
            TypeError: webdataset shards have no length.
        """
        if self.sampler is None:
            raise TypeError("a webdataset caption stream has no length; count training steps instead")
        return len(self.loader)
