"""A latest-frame worker: one thread processes only the newest submitted item.

Camera drivers publish faster than a segmentation model runs. Queuing every frame makes latency grow without
bound, so the worker keeps a slot of size one: a new item replaces the waiting one (which is counted as dropped),
and the thread always picks up the newest. An optional minimum period caps the processing rate; frames that
arrive while it waits replace each other the same way. No ROS here, so the same worker serves any front end.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


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
        self._process = process
        self._on_error = on_error
        self._name = name
        self.min_period_s = min_period_s
        self._cond = threading.Condition()
        self._slot: list[T] = []  # at most one pending item
        self._busy = False
        self._running = False
        self._thread: threading.Thread | None = None
        self._last_start = -float("inf")
        self._submitted = self._processed = self._dropped = self._errors = 0

    @property
    def stats(self) -> WorkerStats:
        with self._cond:
            return WorkerStats(self._submitted, self._processed, self._dropped, self._errors)

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        """Start the thread (no-op when already running)."""
        with self._cond:
            if self._running:
                return
            self._running = True
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the item in progress; a pending item is discarded and counted as dropped.

        Waits up to `timeout` seconds (None = forever) for the item in progress to finish.
        """
        with self._cond:
            if self._running:
                self._running = False
                self._dropped += len(self._slot)
                self._slot.clear()
                self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def submit(self, item: T) -> bool:
        """Offer an item; returns True when it replaced (dropped) an older pending one."""
        with self._cond:
            self._submitted += 1
            replaced = bool(self._slot)
            if replaced:
                self._dropped += 1
            self._slot[:] = [item]
            self._cond.notify_all()
            return replaced

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or in progress; returns False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._slot and not self._busy, timeout)

    def _next_item(self) -> tuple[bool, T | None]:
        """Wait for an item and for the rate limit; returns (False, None) once stopped."""
        with self._cond:
            # A thread left over from before a stop/start cycle exits once a newer one owns the worker.
            while self._running and self._thread is threading.current_thread():
                wait_s = self._last_start + self.min_period_s - time.monotonic()
                if self._slot and wait_s <= 0:
                    item = self._slot.pop()
                    self._busy = True
                    self._last_start = time.monotonic()
                    return True, item
                # Without an item, sleep until one arrives; with one, until the rate limit allows it.
                self._cond.wait(wait_s if self._slot else None)
            return False, None

    def _loop(self) -> None:
        while True:
            ok, item = self._next_item()
            if not ok:
                return
            try:
                self._process(item)  # type: ignore[arg-type]
            except Exception as exc:  # the worker outlives any single bad item
                with self._cond:
                    self._errors += 1
                if self._on_error is not None:
                    self._on_error(exc)
            finally:
                with self._cond:
                    self._processed += 1
                    self._busy = False
                    self._cond.notify_all()
