"""Backend factory: auto falls back with logged reasons, explicit choices fail clearly, Segmenter uses any backend."""
import logging

import numpy as np
import pytest
import torch

from synseg_core import Segmenter
from synseg_core.deploy.backends.base import BackendError
from synseg_core.deploy.backends.factory import create_backend


def test_auto_on_cpu_picks_onnxruntime_and_logs_why(tiny_model, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    backend = create_backend("auto", tiny_model, device="cpu", cache_dir=tmp_path)
    assert backend.name == "onnxruntime" and backend.device.type == "cpu"
    text = caplog.text
    assert "tensorrt (cuda) skipped" in text and "torch (cuda) skipped" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error path")
def test_explicit_tensorrt_without_gpu_says_why(tiny_model, tmp_path):
    with pytest.raises(BackendError, match=r"no usable backend for 'tensorrt'.*tensorrt \(cuda\)"):
        create_backend("tensorrt", tiny_model, device="cuda", cache_dir=tmp_path)


def test_bad_names_and_precisions(tiny_model):
    with pytest.raises(BackendError, match="unknown backend 'onnx'"):
        create_backend("onnx", tiny_model)
    with pytest.raises(BackendError, match="precision 'int8'"):
        create_backend("torch", tiny_model, precision="int8")
    with pytest.raises(BackendError, match="fp16 needs a CUDA device"):
        create_backend("torch", tiny_model, precision="fp16")


def test_segmenter_results_agree_across_backends(tmp_path):
    img = np.random.default_rng(3).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    cats = ["red circle", "grass", "sky"]
    torch.manual_seed(0)
    ref = Segmenter.from_checkpoint("tiny-test")
    ort = Segmenter(ref.model, create_backend("onnxruntime", ref.model, cache_dir=tmp_path))
    a, b = ref.segment(img, cats), ort.segment(img, cats)
    assert float(np.abs(a.probabilities - b.probabilities).max()) <= 1e-3
    assert (a.labels == b.labels).mean() >= 0.999


def test_fixed_size_backend_rejects_other_windows(tiny_model, tmp_path):
    import dataclasses

    seg = Segmenter(tiny_model, create_backend("onnxruntime", tiny_model, cache_dir=tmp_path))
    seg.inference = dataclasses.replace(seg.inference, window=32, stride=16)
    with pytest.raises(BackendError, match="runs 64x64 inputs only"):
        seg.segment(np.zeros((64, 64, 3), np.uint8), ["a"])
