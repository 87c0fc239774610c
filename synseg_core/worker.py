"""A latest-frame worker: one thread processes only the newest submitted item.

Camera drivers publish faster than a segmentation model runs. Queuing every frame makes latency grow without
bound, so the worker keeps a slot of size one: a new item replaces the waiting one (which is counted as dropped),
and the thread always picks up the newest. An optional minimum period caps the processing rate; frames that
arrive while it waits replace each other the same way. It is the one-stream case of
`synseg_core.scheduling.BatchScheduler` (batches of one, no window). No ROS here, so any front end can use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from .scheduling import BatchScheduler

T = TypeVar("T")
_STREAM = "items"


@dataclass(frozen=True)
class WorkerStats:
    """Counters since the worker was created."""

    submitted: int = 0
    processed: int = 0  # items handed to `process` (whether or not it raised)
    dropped: int = 0  # items replaced in the slot before processing, or discarded by `stop`
    errors: int = 0  # `process` calls that raised


class LatestFrameWorker(Generic[T]):
    """Runs `process(item)` on a background thread for the newest submitted item only.

    Args:
        process: called on the worker thread with one item at a time. An exception it raises is counted in
            `stats.errors`, passed to `on_error` and never stops the worker.
        name: the thread's name (shows in debuggers and `threading.enumerate()`).
        min_period_s: minimum time between the starts of two `process` calls (0 = as fast as possible).
        on_error: optional callback for exceptions raised by `process`.
    """

    def __init__(self, process: Callable[[T], None], *, name: str = "latest-frame-worker",
                 min_period_s: float = 0.0, on_error: Callable[[BaseException], None] | None = None) -> None:
        if min_period_s < 0:
            raise ValueError(f"min_period_s must be >= 0, got {min_period_s!r}")
        self._min_period_s = min_period_s
        self._scheduler: BatchScheduler[T] = BatchScheduler(
            lambda batch: process(batch[0][1]), [_STREAM], max_batch=1, min_period_s=min_period_s, name=name,
            on_error=None if on_error is None else lambda exc, _streams: on_error(exc))

    @property
    def min_period_s(self) -> float:
        return self._min_period_s

    @min_period_s.setter
    def min_period_s(self, seconds: float) -> None:
        self._scheduler.set_min_period(_STREAM, seconds)
        self._min_period_s = seconds

    @property
    def stats(self) -> WorkerStats:
        s = self._scheduler.stats(_STREAM)
        return WorkerStats(s.submitted, s.processed, s.dropped, s.errors)

    @property
    def running(self) -> bool:
        return self._scheduler.running

    def start(self) -> None:
        """Start the thread (no-op when already running)."""
        self._scheduler.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the item in progress; a pending item is discarded and counted as dropped.

        Waits up to `timeout` seconds (None = forever) for the item in progress to finish.
        """
        self._scheduler.stop(timeout)

    def submit(self, item: T) -> bool:
        """Offer an item; returns True when it replaced (dropped) an older pending one."""
        return self._scheduler.submit(_STREAM, item)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or in progress; returns False on timeout."""
        return self._scheduler.wait_idle(timeout)
