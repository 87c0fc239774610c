"""Batching caption samples: stacked images plus a flat category list with the image each belongs to."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch

from .samples import CaptionSample
from .skips import SkippedSample


@dataclass
class CaptionBatch:
    """A training batch (docs/method.md §1: M = sum of the per-image category counts).

    Attributes:
        images: float32 [B, 3, S, S], normalised.
        categories: flat list of M category names, image by image.
        owner: int64 [M], the image index of each category.
        captions: the B raw captions.
        keys: the B sample keys.
        skipped: reason -> count of the items dropped from this batch (add into a SkipCounter).
        skipped_samples: the dropped items' markers (for the skip report).
    """

    images: torch.Tensor
    categories: list[str]
    owner: torch.Tensor
    captions: list[str]
    keys: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_samples: list[SkippedSample] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)

    def categories_of(self, image: int) -> list[str]:
        """The categories of image `image`."""
        return [c for c, o in zip(self.categories, self.owner.tolist()) if o == image]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "CaptionBatch":
        """A copy with the tensors on `device`."""
        return replace(self, images=self.images.to(device, non_blocking=non_blocking),
                       owner=self.owner.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "CaptionBatch":
        """Called by DataLoader(pin_memory=True)."""
        return replace(self, images=self.images.pin_memory(), owner=self.owner.pin_memory())


class CaptionCollator:
    """Collate function: drops `SkippedSample` markers (counting them) and stacks the rest.

    A batch in which every item was skipped has B = 0 (images [0, 3, S, S]); the trainer skips its step.

    Args:
        image_size: S, for the shape of an all-skipped batch.
    """

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, items: Sequence[CaptionSample | SkippedSample]) -> CaptionBatch:
        samples = [s for s in items if isinstance(s, CaptionSample)]
        markers = [s for s in items if isinstance(s, SkippedSample)]
        if len(samples) + len(markers) != len(items):
            bad = next(s for s in items if not isinstance(s, (CaptionSample, SkippedSample)))
            raise TypeError(f"CaptionCollator takes CaptionSample/SkippedSample items, got {type(bad).__name__}")
        if samples:
            images = torch.stack([s.image for s in samples])
        else:
            images = torch.empty((0, 3, self.image_size, self.image_size), dtype=torch.float32)
        owner = [i for i, s in enumerate(samples) for _ in s.categories]
        return CaptionBatch(
            images=images,
            categories=[c for s in samples for c in s.categories],
            owner=torch.tensor(owner, dtype=torch.int64),
            captions=[s.caption for s in samples],
            keys=[s.key for s in samples],
            skipped=dict(Counter(s.reason for s in markers)),
            skipped_samples=markers,
        )
