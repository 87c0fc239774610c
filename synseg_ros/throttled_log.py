"""Keyed log throttling: each kind of problem is logged at most once per period, with a count of the repeats.

rclpy's `throttle_duration_sec` throttles per call site, so two different bad encodings arriving from one call
site would hide each other; here the caller names the kind (e.g. "encoding:yuv422") and each kind has its own
clock.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


class ThrottledLog:
    """Calls `emit(message)` for a key at most once per `period_s`; suppressed repeats are counted and reported.

    Args:
        emit: the logging function, e.g. `node.get_logger().error`.
        period_s: minimum seconds between two messages with the same key (0 = never throttle).
        clock: monotonic time source in seconds (injectable for tests).
    """

    def __init__(self, emit: Callable[[str], object], period_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._emit = emit
        self.period_s = period_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, message: str) -> bool:
        """Log `message` unless `key` was logged less than `period_s` ago; returns whether it was logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            repeats = self._suppressed.pop(key, 0)
        if repeats:
            message += f" ({repeats} similar message(s) suppressed in the last {now - last:.1f} s)"
        self._emit(message)
        return True
