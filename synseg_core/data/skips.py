"""Skipped samples and their counts: bad data is skipped and counted, never a crash.

Datasets return a `SkippedSample` marker in place of a sample they cannot use (so the record travels through
DataLoader worker processes with the batch), naming where it came from (manifest file and line, COCO annotation,
shard and key); the collate function drops markers and reports them in ``CaptionBatch.skipped`` (counts by reason)
and ``CaptionBatch.skipped_samples`` (the markers); the trainer adds the counts into a `SkipCounter`, sums it across
ranks with `to_tensor()` / `from_tensor()`, and writes every marker to the run's skip report.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, get_args

import torch

SkipReason = Literal["corrupt_image", "missing_file", "no_caption", "no_categories", "bad_record", "corrupt_shard"]
SKIP_REASONS: tuple[str, ...] = get_args(SkipReason)


@dataclass(frozen=True)
class SkippedSample:
    """Stands in for a sample that could not be used.

    Attributes:
        reason: why (one of SKIP_REASONS).
        key: the sample's key (index, annotation id, shard key or shard URL).
        detail: the path or error message, for logs.
        source: where the record is (``manifest.jsonl:17``, ``captions.json annotations[3]``, ``shard.tar key``);
            set by the dataset.
    """

    reason: SkipReason
    key: str
    detail: str = ""
    source: str = ""

    def describe(self) -> str:
        """One line for logs: 'manifest.jsonl:17: corrupt_image (images/0003.png: cannot identify image file)'."""
        where = self.source or f"key {self.key}"
        return f"{where}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


class SkipCounter:
    """Counts of skipped samples by reason.

    Args:
        counts: initial counts (reason -> number).

    Raises:
        ValueError: an unknown reason.
    """

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self._counts = dict.fromkeys(SKIP_REASONS, 0)
        self.update(counts or {})

    def add(self, reason: str, n: int = 1) -> None:
        """Count `n` more samples skipped for `reason`."""
        if reason not in self._counts:
            raise ValueError(f"unknown skip reason {reason!r}; valid reasons: {list(SKIP_REASONS)}")
        self._counts[reason] += n

    def update(self, counts: Mapping[str, int]) -> None:
        """Add a mapping of counts (e.g. a batch's ``skipped``)."""
        for reason, n in counts.items():
            self.add(reason, n)

    def as_dict(self) -> dict[str, int]:
        """All reasons with their counts (zeros included), in a fixed order."""
        return dict(self._counts)

    @property
    def total(self) -> int:
        """All skipped samples."""
        return sum(self._counts.values())

    def to_tensor(self) -> torch.Tensor:
        """Counts as int64 [R] in SKIP_REASONS order (for ``torch.distributed.all_reduce``)."""
        return torch.tensor([self._counts[r] for r in SKIP_REASONS], dtype=torch.int64)

    @classmethod
    def from_tensor(cls, counts: torch.Tensor) -> "SkipCounter":
        """Inverse of `to_tensor`."""
        values = counts.tolist()
        if len(values) != len(SKIP_REASONS):
            raise ValueError(f"expected {len(SKIP_REASONS)} counts ({list(SKIP_REASONS)}), got {len(values)}")
        return cls(dict(zip(SKIP_REASONS, (int(v) for v in values))))

    def summary(self) -> str:
        """One line for logs: 'skipped 3 samples: corrupt_image=2, missing_file=1'."""
        if not self.total:
            return "skipped 0 samples"
        parts = ", ".join(f"{r}={n}" for r, n in self._counts.items() if n)
        return f"skipped {self.total} samples: {parts}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SkipCounter) and other._counts == self._counts

    def __repr__(self) -> str:
        return f"SkipCounter({self.summary()})"
