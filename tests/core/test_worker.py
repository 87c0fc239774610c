"""LatestFrameWorker: newest-only processing, drop counting, errors, rate limit, stop."""
import threading
import time

import pytest

from synseg_core.worker import LatestFrameWorker, WorkerStats

TIMEOUT_S = 10.0


class Gate:
    """A `process` callable that records items and blocks on the first one until released."""

    def __init__(self):
        self.items = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, item):
        self.items.append(item)
        self.started.set()
        assert self.release.wait(TIMEOUT_S)


def test_only_the_newest_pending_item_is_processed_and_the_rest_are_counted():
    gate = Gate()
    worker = LatestFrameWorker(gate)
    worker.start()
    try:
        assert worker.submit(0) is False
        assert gate.started.wait(TIMEOUT_S)  # item 0 is in progress, the slot is empty
        replaced = [worker.submit(i) for i in range(1, 10)]
        assert replaced == [False] + [True] * 8
        gate.release.set()
        assert worker.wait_idle(TIMEOUT_S)
    finally:
        worker.stop(TIMEOUT_S)
    assert gate.items == [0, 9]
    assert worker.stats == WorkerStats(submitted=10, processed=2, dropped=8, errors=0)


def test_an_exception_is_counted_reported_and_the_worker_keeps_serving():
    seen, errors = [], []

    def process(item):
        if item == "bad":
            raise RuntimeError("inference failed")
        seen.append(item)

    worker = LatestFrameWorker(process, on_error=errors.append)
    worker.start()
    try:
        worker.submit("bad")
        assert worker.wait_idle(TIMEOUT_S)
        worker.submit("good")
        assert worker.wait_idle(TIMEOUT_S)
    finally:
        worker.stop(TIMEOUT_S)
    assert seen == ["good"]
    assert [str(e) for e in errors] == ["inference failed"]
    assert worker.stats.errors == 1 and worker.stats.processed == 2


def test_min_period_spaces_the_starts_and_drops_what_arrives_meanwhile():
    period = 0.3
    starts = []
    worker = LatestFrameWorker(lambda item: starts.append((item, time.monotonic())), min_period_s=period)
    worker.start()
    try:
        worker.submit("a")
        assert worker.wait_idle(TIMEOUT_S)
        for item in ("b", "c", "d"):  # within one period: only the newest is sure to be served
            worker.submit(item)
        assert worker.wait_idle(TIMEOUT_S)
    finally:
        worker.stop(TIMEOUT_S)
    items = [item for item, _ in starts]
    assert items[0] == "a" and items[-1] == "d"
    assert all(later - earlier >= period for (_, earlier), (_, later) in zip(starts, starts[1:]))
    assert worker.stats.dropped == 4 - len(items)  # usually ["a", "d"]; a stalled test thread may let "b" in


def test_stop_discards_the_pending_item_and_joins_the_thread():
    gate = Gate()
    worker = LatestFrameWorker(gate, name="test-worker")
    worker.start()
    worker.submit(1)
    assert gate.started.wait(TIMEOUT_S)
    worker.submit(2)
    worker.stop(timeout=0)  # discards item 2 while item 1 is still in progress
    gate.release.set()
    worker.stop(TIMEOUT_S)  # joins the thread
    assert not worker.running
    assert "test-worker" not in [t.name for t in threading.enumerate()]
    assert gate.items == [1]
    assert worker.stats.dropped == 1
    # A stopped worker can be started again and serves new items.
    worker.start()
    worker.submit(3)
    assert worker.wait_idle(TIMEOUT_S)
    worker.stop(TIMEOUT_S)
    assert gate.items == [1, 3]


def test_negative_min_period_is_rejected():
    with pytest.raises(ValueError, match="min_period_s must be >= 0, got -1"):
        LatestFrameWorker(print, min_period_s=-1)
