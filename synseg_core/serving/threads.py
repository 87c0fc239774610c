"""Splitting the CPU's cores between concurrent inference calls.

torch's intra-op pool defaults to one thread per core for every calling thread, so N concurrent CPU calls run
N x cores OpenMP threads: their barriers wait on threads that the others preempt. Giving each call cores // N
threads keeps the total at the core count; benchmarks/multicamera.py measures the effect against separate
single-camera nodes (figures in the README and docs/dev_notes).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


def threads_per_lane(lanes: int, threads: int) -> int:
    """Intra-op threads for each of `lanes` concurrent calls sharing `threads` threads (at least one each)."""
    if lanes < 1:
        raise ValueError(f"lanes must be >= 1, got {lanes}")
    return max(1, threads // lanes)


@dataclass
class IntraOpThreads:
    """torch's process-wide intra-op thread count, changed for concurrent lanes and restorable.

    torch.set_num_threads is process-wide (threads started later take it too), so whoever splits the cores
    restores the previous count when the lanes stop.
    """

    per_lane: int
    previous: int

    @classmethod
    def split_between(cls, lanes: int) -> "IntraOpThreads":
        previous = torch.get_num_threads()
        per_lane = threads_per_lane(lanes, previous)
        if per_lane != previous:
            log.info("%d concurrent inference lanes: torch intra-op threads %d -> %d per lane", lanes, previous,
                     per_lane)
            torch.set_num_threads(per_lane)
        return cls(per_lane, previous)

    def restore(self) -> None:
        if torch.get_num_threads() != self.previous:
            torch.set_num_threads(self.previous)
