"""Batching scheduler: frames of several streams (cameras) share one model, one batch at a time. No ROS here.

Each stream keeps a slot of size one (latest-frame policy): a new frame replaces the waiting one, which is counted
as dropped on that stream only. When a frame becomes eligible (its stream's rate limit allows a start), it waits
at most `batch_window_s` for frames of the other live streams; then every eligible frame (at most `max_batch`,
least recently served streams first, so a flooding stream never starves the others) goes to `process` as one
batch. Only live streams are waited for: a stream that never sent or sent nothing for `stale_after_s` does not
delay the others. While a batch runs, new frames fill the slots, so under load the next batch starts at once.

`BatchPlanner` makes these decisions from explicit timestamps (deterministic, tested without threads);
`BatchScheduler` runs it on one background thread.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Generic, Mapping, Sequence, TypeVar

T = TypeVar("T")
Batch = list[tuple[str, T]]  # (stream name, item): at most one item per stream, in the order chosen


@dataclass(frozen=True)
class StreamStats:
    """Counters of one stream since the scheduler was created."""

    submitted: int = 0
    processed: int = 0  # items handed to `process` (whether or not it raised)
    dropped: int = 0  # items replaced in the slot before processing, or discarded by `stop`
    errors: int = 0  # items in batches whose `process` call raised
    seconds_since_submit: float | None = None  # None = nothing submitted yet
    stale: bool = True  # nothing submitted yet, or nothing for `stale_after_s`


@dataclass(frozen=True)
class BatchStats:
    """Batches handed to `process` and the items they held."""

    batches: int = 0
    items: int = 0
    largest: int = 0


@dataclass
class _Stream(Generic[T]):
    min_period_s: float
    order: int  # position in the stream list (ties in fairness go to the earlier stream)
    pending: list = field(default_factory=list)  # at most one (item, arrival time)
    last_submit: float | None = None
    last_start: float = -math.inf
    submitted: int = 0
    processed: int = 0
    dropped: int = 0
    errors: int = 0


def _check_streams(streams: Sequence[str]) -> list[str]:
    names = list(streams)
    if not names:
        raise ValueError("streams is empty; give at least one stream name")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"stream names must be non-empty strings, got {name!r} in {names!r}")
        if names.count(name) > 1:
            raise ValueError(f"stream name {name!r} appears {names.count(name)} times in {names!r}; names must be "
                             "unique")
    return names


class BatchPlanner(Generic[T]):
    """Which pending items form the next batch, and when. Pure bookkeeping: callers pass the time in and lock.

    Args:
        streams: unique stream names (e.g. camera names).
        batch_window_s: how long an eligible item waits at most for items of other live streams.
        max_batch: most items per batch (None = one from every stream).
        min_period_s: minimum seconds between two starts of one stream: one value for all or per stream name.
        stale_after_s: a stream with no submission for this long is not waited for (and reported stale).
    """

    def __init__(self, streams: Sequence[str], *, batch_window_s: float = 0.0, max_batch: int | None = None,
                 min_period_s: float | Mapping[str, float] = 0.0, stale_after_s: float = math.inf) -> None:
        names = _check_streams(streams)
        if batch_window_s < 0:
            raise ValueError(f"batch_window_s must be >= 0, got {batch_window_s!r}")
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 or None (no limit), got {max_batch!r}")
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s must be > 0, got {stale_after_s!r}")
        self.batch_window_s = batch_window_s
        self.max_batch = max_batch
        self.stale_after_s = stale_after_s
        self._streams: dict[str, _Stream[T]] = {name: _Stream(0.0, i) for i, name in enumerate(names)}
        periods = min_period_s if isinstance(min_period_s, Mapping) else dict.fromkeys(names, min_period_s)
        for name, seconds in periods.items():
            self.set_min_period(name, seconds)
        self._batches = BatchStats()

    @property
    def streams(self) -> list[str]:
        return list(self._streams)

    def _stream(self, name: str) -> _Stream[T]:
        try:
            return self._streams[name]
        except KeyError:
            raise ValueError(f"unknown stream {name!r}; streams: {list(self._streams)}") from None

    def set_min_period(self, stream: str, seconds: float) -> None:
        """Rate limit of one stream: at least `seconds` between two of its starts (0 = none)."""
        if seconds < 0:
            raise ValueError(f"min_period_s must be >= 0, got {seconds!r} for stream {stream!r}")
        self._stream(stream).min_period_s = seconds

    def offer(self, stream: str, item: T, now: float) -> bool:
        """Put `item` in its stream's slot; returns True when it replaced (dropped) an older pending item."""
        s = self._stream(stream)
        s.submitted += 1
        s.last_submit = now
        replaced = bool(s.pending)
        s.dropped += replaced
        s.pending[:] = [(item, now)]
        return replaced

    def has_pending(self) -> bool:
        return any(s.pending for s in self._streams.values())

    def _live(self, s: _Stream[T], now: float) -> bool:
        return s.last_submit is not None and now - s.last_submit <= self.stale_after_s

    def next_batch(self, now: float) -> tuple[Batch, float | None]:
        """(batch, 0) when a batch is due now (its items leave their slots), else ([], seconds to wait).

        The wait is None when nothing is pending (wait for the next `offer`).
        """
        ready_at = {name: s.last_start + s.min_period_s for name, s in self._streams.items()}
        pending = [name for name, s in self._streams.items() if s.pending]
        eligible = [name for name in pending if ready_at[name] <= now]
        later = [ready_at[name] for name in pending if ready_at[name] > now]  # rate-limited pending items
        if not eligible:
            return [], (min(later) - now) if later else None
        deadline = min(self._streams[name].pending[0][1] for name in eligible) + self.batch_window_s
        full = self.max_batch is not None and len(eligible) >= self.max_batch
        awaited = [name for name, s in self._streams.items()
                   if name not in eligible and self._live(s, now) and ready_at[name] <= deadline]
        if awaited and not full and now < deadline:
            return [], min([deadline, *later]) - now
        # Fairness: the least recently served streams go first (round-robin when all are always pending).
        chosen = sorted(eligible, key=lambda name: (self._streams[name].last_start, self._streams[name].order))
        batch = []
        for name in chosen[:self.max_batch]:
            s = self._streams[name]
            (item, _), = s.pending
            s.pending.clear()
            s.last_start = now
            batch.append((name, item))
        b = self._batches
        self._batches = BatchStats(b.batches + 1, b.items + len(batch), max(b.largest, len(batch)))
        return batch, 0.0

    def finished(self, batch: Batch, failed: bool) -> None:
        """Record that `process` returned (failed=False) or raised (failed=True) for `batch`."""
        for name, _ in batch:
            s = self._streams[name]
            s.processed += 1
            s.errors += failed

    def discard_pending(self) -> None:
        """Drop every pending item (counted as dropped on its stream)."""
        for s in self._streams.values():
            s.dropped += len(s.pending)
            s.pending.clear()

    def stats(self, stream: str, now: float) -> StreamStats:
        s = self._stream(stream)
        age = None if s.last_submit is None else now - s.last_submit
        return StreamStats(s.submitted, s.processed, s.dropped, s.errors, age, not self._live(s, now))

    @property
    def batch_stats(self) -> BatchStats:
        return self._batches


class BatchScheduler(Generic[T]):
    """Runs `process(batch)` on one background thread for batches chosen by a `BatchPlanner`.

    Args:
        process: called with [(stream, item), ...]; an exception it raises is counted as an error on every
            stream of that batch, passed to `on_error` with the stream names and never stops the scheduler.
        streams, batch_window_s, max_batch, min_period_s, stale_after_s: see `BatchPlanner`.
        name: the thread's name.
        on_error: optional callback (exception, stream names of the failed batch).
    """

    def __init__(self, process: Callable[[Batch], None], streams: Sequence[str], *, batch_window_s: float = 0.0,
                 max_batch: int | None = None, min_period_s: float | Mapping[str, float] = 0.0,
                 stale_after_s: float = math.inf, name: str = "batch-scheduler",
                 on_error: Callable[[BaseException, list[str]], None] | None = None) -> None:
        self._planner: BatchPlanner[T] = BatchPlanner(streams, batch_window_s=batch_window_s, max_batch=max_batch,
                                                      min_period_s=min_period_s, stale_after_s=stale_after_s)
        self._process = process
        self._on_error = on_error
        self._name = name
        self._cond = threading.Condition()
        self._busy = False
        self._running = False
        self._thread: threading.Thread | None = None

    @property
    def streams(self) -> list[str]:
        return self._planner.streams

    @property
    def running(self) -> bool:
        return self._running

    def stats(self, stream: str) -> StreamStats:
        with self._cond:
            return self._planner.stats(stream, time.monotonic())

    @property
    def batch_stats(self) -> BatchStats:
        with self._cond:
            return self._planner.batch_stats

    def set_min_period(self, stream: str, seconds: float) -> None:
        with self._cond:
            self._planner.set_min_period(stream, seconds)
            self._cond.notify_all()

    def start(self) -> None:
        """Start the thread (no-op when already running)."""
        with self._cond:
            if self._running:
                return
            self._running = True
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the batch in progress; pending items are discarded and counted as dropped.

        Waits up to `timeout` seconds (None = forever) for the batch in progress to finish.
        """
        with self._cond:
            if self._running:
                self._running = False
                self._planner.discard_pending()
                self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def submit(self, stream: str, item: T) -> bool:
        """Offer an item of `stream`; returns True when it replaced (dropped) that stream's older pending one."""
        with self._cond:
            replaced = self._planner.offer(stream, item, time.monotonic())
            self._cond.notify_all()
            return replaced

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or in progress; returns False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._planner.has_pending() and not self._busy, timeout)

    def _next_batch(self) -> Batch:
        """Wait until a batch is due; returns [] once stopped."""
        with self._cond:
            # A thread left over from before a stop/start cycle exits once a newer one owns the scheduler.
            while self._running and self._thread is threading.current_thread():
                batch, wait_s = self._planner.next_batch(time.monotonic())
                if batch:
                    self._busy = True
                    return batch
                self._cond.wait(wait_s)
            return []

    def _loop(self) -> None:
        while batch := self._next_batch():
            failed = False
            try:
                self._process(batch)
            except Exception as exc:  # the scheduler outlives any single bad batch
                failed = True
                if self._on_error is not None:
                    self._on_error(exc, [name for name, _ in batch])
            finally:
                with self._cond:
                    self._planner.finished(batch, failed)
                    self._busy = False
                    self._cond.notify_all()
