"""Segmenter: shapes at input resolution, label/mask consistency, sliding windows, batches, bad input."""
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from synseg_core import CategoryError, ImageError, Segmenter
from synseg_core.config import InferenceConfig

CATS = ["red circle", "grass", "blue square"]


@pytest.mark.parametrize("shape", [(47, 83), (64, 64), (131, 29), (1, 5)])
def test_outputs_at_input_resolution(tiny_segmenter, rng, shape):
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    r = tiny_segmenter.segment(img, CATS)
    assert r.categories == CATS
    assert r.probabilities.shape == r.masks.shape == (3, *shape)
    assert r.labels.shape == r.confidence.shape == shape
    assert r.probabilities.dtype == np.float32 and r.labels.dtype == np.int32 and r.masks.dtype == bool


def test_labels_masks_and_thresholds_agree(tiny_segmenter, rng):
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    probs = tiny_segmenter.segment(img, CATS).probabilities
    tau = float(np.median(probs.max(0)))  # put the background threshold inside the value range
    tiny_segmenter.inference = dataclasses.replace(tiny_segmenter.inference, background_threshold=tau,
                                                   mask_threshold=float(np.median(probs)))
    r = tiny_segmenter.segment(img, CATS)
    best = probs.argmax(0) + 1
    conf = probs.max(0)
    np.testing.assert_allclose(r.confidence, conf, atol=1e-6)
    np.testing.assert_array_equal(r.labels, np.where(conf <= tau, 0, best))
    assert 0 < (r.labels == 0).mean() < 1
    np.testing.assert_array_equal(r.masks, probs > tiny_segmenter.inference.mask_threshold)
    tiny_segmenter.inference = dataclasses.replace(tiny_segmenter.inference, background=False)
    np.testing.assert_array_equal(tiny_segmenter.segment(img, CATS).labels, best)


def test_sliding_window_equals_single_window_when_it_covers_the_image(tiny_model, rng):
    from synseg_core.deploy.backends.torch_backend import TorchBackend

    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    slide = Segmenter(tiny_model, TorchBackend(tiny_model), InferenceConfig(short_side=64, window=64, stride=32))
    whole = Segmenter(tiny_model, TorchBackend(tiny_model), InferenceConfig(short_side=64, window=None))
    np.testing.assert_allclose(slide.segment(img, CATS).probabilities, whole.segment(img, CATS).probabilities,
                               atol=1e-6)


def test_batch_equals_single_calls(tiny_segmenter, rng):
    imgs = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(40, 90, 3), (64, 64, 3), (100, 50, 3)]]
    batch = tiny_segmenter.segment(imgs, CATS)
    for img, res in zip(imgs, batch):
        single = tiny_segmenter.segment(img, CATS)
        np.testing.assert_allclose(res.probabilities, single.probabilities, atol=1e-5)
        np.testing.assert_array_equal(res.labels, single.labels)
    stacked = tiny_segmenter.segment(np.stack([imgs[1], imgs[1]]), CATS)
    assert len(stacked) == 2


def test_results_without_probabilities_keep_everything_else(tiny_segmenter, rng):
    imgs = [rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(2)]
    full = tiny_segmenter.segment(imgs, CATS)
    lean = tiny_segmenter.segment(imgs, CATS, probabilities=False)
    for a, b in zip(full, lean):
        assert a.probabilities is not None and b.probabilities is None and b.categories == a.categories
        for name in ("masks", "labels", "confidence"):
            np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((10, 10, 3), np.float32), "dtype uint8"),
    (np.zeros((10, 10), np.uint8), "HxWx3"),
    (np.zeros((10, 10, 4), np.uint8), "HxWx3"),
    (np.zeros((0, 10, 3), np.uint8), "zero size"),
    ("not an image", "HxWx3 uint8 RGB array"),
])
def test_bad_images(tiny_segmenter, bad, match):
    with pytest.raises((ImageError, ValueError), match=match):
        tiny_segmenter.segment(bad, CATS)


def test_oversized_image_is_rejected_before_any_work(tiny_segmenter):
    huge = np.lib.stride_tricks.as_strided(np.zeros(3, np.uint8), shape=(9000, 9000, 3), strides=(0, 0, 1))
    with pytest.raises(ImageError, match="larger than"):
        tiny_segmenter.segment(huge, CATS)


@pytest.mark.parametrize("cats, match", [
    ([], "empty"),
    ("cat, dog", "list of strings"),
    (["cat", 3], r"categories\[1\] must be a string"),
    (["cat", "  "], "whitespace"),
    (["x"] * 65, "at most 64"),
    (["a" * 201], "characters long"),
])
def test_bad_categories(tiny_segmenter, cats, match):
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(CategoryError, match=match):
        tiny_segmenter.segment(img, cats)


def test_resize_rule_short_side_and_long_cap():
    from synseg_core.inference.preprocess import model_input_size

    cfg = InferenceConfig(short_side=448, window=448, stride=224, long_side_cap=2048)
    assert model_input_size(480, 640, cfg, 16) == (448, 592)  # 640 * 448/480 = 597.3 -> 592 (multiple of 16)
    assert model_input_size(100, 1000, cfg, 16) == (448, 2048)  # long side capped; short side kept >= one window
    assert model_input_size(300, 200, InferenceConfig(short_side=64, window=None), 16) == (64, 64)


class _OverlapRecorder:
    """Wraps a backend and records the most `run` calls that were in progress at once."""

    def __init__(self, backend, thread_safe: bool):
        self._backend, self.thread_safe = backend, thread_safe
        self.name, self.precision, self.device = backend.name, backend.precision, backend.device
        self.input_size, self.max_batch = backend.input_size, backend.max_batch
        self._lock, self._running, self.most = threading.Lock(), 0, 0

    def run(self, images, text):
        with self._lock:
            self._running += 1
            self.most = max(self.most, self._running)
        try:
            time.sleep(0.05)  # long enough for the other threads' calls to arrive
            return self._backend.run(images, text)
        finally:
            with self._lock:
                self._running -= 1


@pytest.mark.parametrize("thread_safe", [True, False])
def test_concurrent_calls_run_at_once_only_on_thread_safe_backends(tiny_model, rng, thread_safe):
    """Thread-safe backends (torch, ONNX Runtime) serve concurrent `segment` calls at once with the same results as
    serial calls; others (TensorRT's one execution context) are serialised by the Segmenter."""
    from synseg_core.deploy.backends.torch_backend import TorchBackend

    backend = _OverlapRecorder(TorchBackend(tiny_model), thread_safe)
    segmenter = Segmenter(tiny_model, backend)
    images = [rng.integers(0, 256, (40 + 8 * i, 56, 3), dtype=np.uint8) for i in range(3)]
    serial = [segmenter.segment(im, ["cat", "dog"]) for im in images]
    backend.most = 0
    with ThreadPoolExecutor(max_workers=3) as pool:
        concurrent = list(pool.map(lambda im: segmenter.segment(im, ["cat", "dog"]), images))
    assert backend.most == (3 if thread_safe else 1)
    for a, b in zip(serial, concurrent):
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=0, atol=1e-6)


def test_text_is_encoded_once_per_query(tiny_segmenter, rng, monkeypatch):
    calls = []
    encode = tiny_segmenter.encode_text
    monkeypatch.setattr(tiny_segmenter, "encode_text", lambda cats: calls.append(list(cats)) or encode(cats))
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    first = tiny_segmenter.segment(image, ["cat", "dog"])
    again = tiny_segmenter.segment(image, ["cat", "dog"])
    assert calls == [["cat", "dog"]]  # the second frame of the query does no text work
    np.testing.assert_array_equal(first.labels, again.labels)
    tiny_segmenter.segment(image, ["dog"])
    assert calls == [["cat", "dog"], ["dog"]]
