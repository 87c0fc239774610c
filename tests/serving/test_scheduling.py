"""Batching scheduler (no ROS): batch window, fairness, drops, rate limits, staleness, the threaded driver, and
batched inference through ONNX Runtime and torch matching one frame at a time."""
import threading

import numpy as np
import pytest
import torch

from synseg_core import Segmenter, get_model_config
from synseg_core.deploy.backends.base import BackendError
from synseg_core.deploy.backends.factory import create_backend
from synseg_core.model.synseg import SynSeg
from synseg_core.serving.scheduling import BatchPlanner, BatchScheduler, BatchStats, StreamStats

TIMEOUT_S = 10.0
CAMERAS = ["front", "rear", "left"]


def names(batch):
    return [stream for stream, _ in batch]


def serve(planner, now):
    """The batch due at `now`, marked finished."""
    batch, wait = planner.next_batch(now)
    planner.finished(batch, failed=False)
    return batch


def test_a_frame_waits_at_most_the_window_for_the_other_live_cameras():
    planner = BatchPlanner(CAMERAS, batch_window_s=0.1)
    for camera in CAMERAS:
        planner.offer(camera, f"{camera}0", now=0.0)
    assert serve(planner, 0.0) == [("front", "front0"), ("rear", "rear0"), ("left", "left0")]

    planner.offer("front", "front1", now=1.0)
    assert planner.next_batch(1.0) == ([], pytest.approx(0.1))  # rear and left are live: wait for them
    planner.offer("rear", "rear1", now=1.04)
    assert planner.next_batch(1.04) == ([], pytest.approx(0.06))  # the window counts from the oldest frame
    assert serve(planner, 1.1) == [("front", "front1"), ("rear", "rear1")]  # left did not come in time

    for t, camera in ((2.0, "left"), (2.01, "front"), (2.02, "rear")):
        planner.offer(camera, f"{camera}2", now=t)
    # All live cameras in: no waiting at all; the least recently served camera (left) goes first.
    assert names(serve(planner, 2.02)) == ["left", "front", "rear"]
    assert planner.batch_stats == BatchStats(batches=3, items=8, largest=3)
    assert planner.next_batch(2.5) == ([], None)  # nothing pending: wait for the next offer


def test_cameras_that_never_sent_or_went_quiet_are_not_waited_for_and_are_reported_stale():
    planner = BatchPlanner(CAMERAS, batch_window_s=0.1, stale_after_s=1.5)
    assert planner.stats("left", now=0.0).stale and planner.stats("left", 0.0).seconds_since_submit is None
    planner.offer("front", "f0", now=0.0)
    assert names(serve(planner, 0.0)) == ["front"]  # the others never sent: no wait
    planner.offer("left", "l0", now=0.5)
    assert planner.next_batch(0.5)[0] == []  # front is live: left waits for it
    assert names(serve(planner, 0.6)) == ["left"]
    planner.offer("front", "f1", now=1.0)
    assert planner.next_batch(1.0)[0] == []  # left is live (0.5 s ago): front waits for it
    assert names(serve(planner, 1.1)) == ["front"]
    planner.offer("front", "f2", now=2.5)
    assert names(serve(planner, 2.5)) == ["front"]  # left sent nothing for 2 s > 1.5 s: stale, not waited for
    left = planner.stats("left", now=2.5)
    assert left.stale and left.seconds_since_submit == pytest.approx(2.0)
    assert not planner.stats("front", now=2.5).stale


def test_a_flooding_camera_never_starves_the_others_and_only_its_frames_are_dropped():
    planner = BatchPlanner(CAMERAS, batch_window_s=0.0, max_batch=2)
    slow_sent = {"rear": 0, "left": 0}
    slow_served = {"rear": [], "left": []}
    for step in range(60):
        now = step * 0.01
        for repeat in range(5):  # front floods: five frames per step
            planner.offer("front", (step, repeat), now)
        for offset, camera in enumerate(("rear", "left")):
            if step % 6 == offset:  # the slow cameras send every sixth step, out of phase
                planner.offer(camera, step, now)
                slow_sent[camera] += 1
        for camera, item in serve(planner, now):
            if camera in slow_served:
                slow_served[camera].append(item)
    for camera in ("rear", "left"):
        assert len(slow_served[camera]) == slow_sent[camera]
        assert planner.stats(camera, now).dropped == 0
    front = planner.stats("front", now)
    assert front.dropped > 0 and front.dropped + front.processed == front.submitted


def test_round_robin_when_every_camera_always_has_a_frame():
    planner = BatchPlanner(CAMERAS, max_batch=1)
    order = []
    for step in range(6):
        for camera in CAMERAS:
            planner.offer(camera, step, now=step)
        order += names(serve(planner, now=step))
    assert order == CAMERAS * 2


def test_latest_frame_per_camera_and_drops_counted_per_camera():
    planner = BatchPlanner(CAMERAS)
    assert planner.offer("front", 1, now=0.0) is False
    assert planner.offer("front", 2, now=0.0) is True
    assert planner.offer("rear", 1, now=0.0) is False
    assert serve(planner, 0.0) == [("front", 2), ("rear", 1)]
    planner.offer("left", 1, now=1.0)
    planner.discard_pending()
    assert planner.stats("front", 1.0) == StreamStats(2, 1, 1, 0, pytest.approx(1.0), False)
    assert planner.stats("rear", 1.0).dropped == 0 and planner.stats("left", 1.0).dropped == 1


def test_a_rate_limited_camera_waits_for_its_period_and_delays_no_one():
    planner = BatchPlanner(CAMERAS, batch_window_s=0.1, min_period_s={"front": 1.0})
    planner.offer("front", "f0", now=0.0)
    planner.offer("rear", "r0", now=0.0)
    assert names(serve(planner, 0.0)) == ["front", "rear"]
    planner.offer("front", "f1", now=0.2)
    assert planner.next_batch(0.2) == ([], pytest.approx(0.8))  # front may start again at 1.0
    planner.offer("rear", "r1", now=0.3)
    assert serve(planner, 0.4) == [("rear", "r1")]  # front's next start (1.0) is past rear's window: no wait
    assert serve(planner, 1.0) == [("front", "f1")]


@pytest.mark.parametrize("kwargs, message", [
    (dict(streams=[]), "streams is empty"),
    (dict(streams=["a", ""]), "stream names must be non-empty strings, got ''"),
    (dict(streams=["a", "b", "a"]), "stream name 'a' appears 2 times in ['a', 'b', 'a']"),
    (dict(streams=["a"], batch_window_s=-1), "batch_window_s must be >= 0, got -1"),
    (dict(streams=["a"], max_batch=0), "max_batch must be >= 1 or None (no limit), got 0"),
    (dict(streams=["a"], min_period_s={"a": -2}), "min_period_s must be >= 0, got -2 for stream 'a'"),
    (dict(streams=["a"], min_period_s={"b": 1}), "unknown stream 'b'; streams: ['a']"),
    (dict(streams=["a"], stale_after_s=0), "stale_after_s must be > 0, got 0"),
])
def test_bad_settings_are_rejected_with_the_value(kwargs, message):
    with pytest.raises(ValueError) as info:
        BatchPlanner(kwargs.pop("streams"), **kwargs)
    assert message in str(info.value)


def test_unknown_stream_is_rejected():
    with pytest.raises(ValueError, match=r"unknown stream 'back'; streams: \['front', 'rear', 'left'\]"):
        BatchPlanner(CAMERAS).offer("back", 1, now=0.0)


class Gate:
    """A `process` callable that records batches and blocks on the first one until released."""

    def __init__(self):
        self.batches = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, batch):
        self.batches.append(batch)
        self.started.set()
        assert self.release.wait(TIMEOUT_S)


def test_scheduler_thread_batches_what_arrived_during_the_previous_batch():
    gate = Gate()
    scheduler = BatchScheduler(gate, CAMERAS, batch_window_s=TIMEOUT_S, name="test-batcher")
    scheduler.start()
    try:
        scheduler.submit("front", "f0")  # no other camera is live yet: served at once
        assert gate.started.wait(TIMEOUT_S)
        for camera in CAMERAS:  # arrive while f0 runs (front twice: f1 is dropped)
            scheduler.submit(camera, f"{camera[0]}1")
        scheduler.submit("front", "f2")
        gate.release.set()
        assert scheduler.wait_idle(TIMEOUT_S)
    finally:
        scheduler.stop(TIMEOUT_S)
    # Front was served last, so it goes last.
    assert gate.batches == [[("front", "f0")], [("rear", "r1"), ("left", "l1"), ("front", "f2")]]
    assert scheduler.stats("front").dropped == 1 and scheduler.stats("rear").dropped == 0
    assert scheduler.batch_stats == BatchStats(batches=2, items=4, largest=3)
    assert "test-batcher" not in [t.name for t in threading.enumerate()]


def test_scheduler_counts_a_failed_batch_on_each_of_its_streams_and_keeps_serving():
    errors, served = [], []

    def process(batch):
        if any(item == "bad" for _, item in batch):
            raise RuntimeError("backend failed")
        served.extend(batch)

    scheduler = BatchScheduler(process, CAMERAS, on_error=lambda exc, streams: errors.append((str(exc), streams)))
    scheduler.start()
    try:
        scheduler.submit("front", "bad")
        assert scheduler.wait_idle(TIMEOUT_S)
        scheduler.submit("rear", "good")
        assert scheduler.wait_idle(TIMEOUT_S)
    finally:
        scheduler.stop(TIMEOUT_S)
    assert errors == [("backend failed", ["front"])] and served == [("rear", "good")]
    assert scheduler.stats("front").errors == 1 and scheduler.stats("rear").errors == 0
    assert scheduler.stats("front").processed == 1


# ---- batched inference: ONNX Runtime (dynamic image batch) and torch against one frame at a time ----------------

SIZES = [(48, 64), (70, 52), (64, 96)]  # three cameras of different sizes (several 64-pixel windows each)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return SynSeg(get_model_config("tiny-test")).eval()


@pytest.mark.slow
def test_onnxruntime_dynamic_image_batch_matches_torch(tiny_model, tmp_path):
    onnx = create_backend("onnxruntime", tiny_model, cache_dir=tmp_path, max_batch=3)
    assert onnx.name == "onnxruntime" and onnx.max_batch == 3
    reference = create_backend("torch", tiny_model)
    for k in (1, 5):
        text = tiny_model.text_embeddings([f"category {i}" for i in range(k)])
        for b in (1, 2, 3):
            torch.manual_seed(10 * b + k)
            images = torch.randn(b, 3, 64, 64)
            got, expected = onnx.run(images, text), reference.run(images, text)
            assert got.shape == expected.shape == (b, k, 64, 64)
            assert float((got - expected).abs().max()) <= 1e-4, (b, k)
    with pytest.raises(BackendError, match="batch of 4 images exceeds max_batch 3"):
        onnx.run(torch.randn(4, 3, 64, 64), text)

    # Whole frames through the Segmenter: the windows of B frames of different sizes share batches of at most
    # max_batch, and every frame's probabilities equal torch's for that frame alone.
    onnx_segmenter, torch_segmenter = Segmenter(tiny_model, onnx), Segmenter(tiny_model, reference)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]
    for k in (1, 5):
        categories = [f"thing {i}" for i in range(k)]
        for b in (1, 2, 3):
            batched = onnx_segmenter.segment_probabilities(frames[:b], categories)
            for frame, probs in zip(frames[:b], batched):
                alone = torch_segmenter.segment_probabilities([frame], categories)[0]
                assert probs.shape == (k, *frame.shape[:2])
                assert float((probs - alone).abs().max()) <= 1e-4, (b, k)


def test_torch_batch_of_frames_equals_each_frame_alone(tiny_model):
    segmenter = Segmenter(tiny_model, create_backend("torch", tiny_model))
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]
    categories = ["cat", "dog", "tree", "road", "sky"]
    for frame, result in zip(frames, segmenter.segment(frames, categories)):
        alone = segmenter.segment(frame, categories)
        assert result.labels.shape == frame.shape[:2]
        np.testing.assert_allclose(result.probabilities, alone.probabilities, rtol=0, atol=1e-5)
