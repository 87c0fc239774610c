"""TensorRTBackend: running on tensors, bad input, verification -> quarantine -> fp16-to-fp32 fallback."""
import json
import logging

import pytest
import torch

from fake_tensorrt import Behaviour, calls_named
from synseg_core.deploy.backends.base import BackendError, ImagePathBackend
from synseg_core.deploy.backends.tensorrt import ShapeOutOfProfileError, TensorRTError, create_tensorrt_backend
from synseg_core.deploy.backends.tensorrt.backend import engine_request
from synseg_core.deploy.backends.tensorrt.cache import EngineCache, engine_key
from synseg_core.deploy.backends.tensorrt.probe import TensorRTInfo
from tensorrt_helpers import (EMBED_DIM, FAKE_GPU, SIZE, install_fake, ort_reference, small_config,  # noqa: F401
                              tiny_onnx)


def _create(onnx, config, reference=None):
    return create_tensorrt_backend(onnx, reference or ort_reference(onnx), config, device="cpu",
                                   device_info=FAKE_GPU)


@pytest.fixture
def fp32_backend(monkeypatch, tmp_path, tiny_onnx):
    install_fake(monkeypatch)
    return _create(tiny_onnx, small_config(tmp_path))


@pytest.mark.parametrize("batch, categories", [(1, 1), (3, 5), (2, 12)])  # 12 > max_categories: run in chunks
def test_run_matches_onnxruntime(fp32_backend, tiny_onnx, batch, categories):
    assert isinstance(fp32_backend, ImagePathBackend) and fp32_backend.name == "tensorrt"
    torch.manual_seed(batch * 10 + categories)
    images, text = torch.randn(batch, 3, SIZE, SIZE), torch.randn(categories, EMBED_DIM)
    got = fp32_backend.run(images, text)
    want = ort_reference(tiny_onnx)().run(images, text)
    assert got.shape == (batch, categories, SIZE, SIZE) and got.dtype == torch.float32
    assert float((got - want).abs().max()) <= 1e-5


@pytest.mark.parametrize("images, text, message", [
    ((1, 3, 32, 32), (2, EMBED_DIM), r"shape \(1, 3, 32, 32\); this TensorRT engine takes \[B, 3, 16, 16\]"),
    ((3, 16, 16), (2, EMBED_DIM), r"images have shape \(3, 16, 16\)"),
    ((4, 3, 16, 16), (2, EMBED_DIM), r"4 images in one call; this engine takes at most 3"),
    ((1, 3, 16, 16), (2, 5), rf"text embeddings have shape \(2, 5\); expected \[K, {EMBED_DIM}\]"),
    ((1, 3, 16, 16), (0, EMBED_DIM), r"with K >= 1"),
])
def test_bad_input_is_refused_with_the_accepted_shapes(fp32_backend, images, text, message):
    with pytest.raises(BackendError, match=message):
        fp32_backend.run(torch.zeros(images), torch.zeros(text))


def test_runner_checks_names_and_profile(fp32_backend):
    runner = fp32_backend.runner
    assert runner.input_names == ["images", "text_embeddings"] and runner.output_names == ["probabilities"]
    with pytest.raises(TensorRTError, match=r"engine inputs are \['images', 'text_embeddings'\], got \['images'\]"):
        runner({"images": torch.zeros(1, 3, SIZE, SIZE)})
    with pytest.raises(ShapeOutOfProfileError, match=r"'text_embeddings' has shape \(6, 8\); the engine accepts "
                                                     r"shapes from \(1, 8\) to \(5, 8\)"):
        runner({"images": torch.zeros(1, 3, SIZE, SIZE), "text_embeddings": torch.zeros(6, EMBED_DIM)})


def test_missing_onnx_file_is_named(monkeypatch, tmp_path):
    install_fake(monkeypatch)
    missing = tmp_path / "nope.onnx"
    with pytest.raises(FileNotFoundError, match="ONNX file .*nope.onnx' does not exist; export it first"):
        _create(missing, small_config(tmp_path))


def test_engine_failing_verification_is_quarantined_and_fp32_is_used(monkeypatch, tmp_path, tiny_onnx, caplog):
    config = small_config(tmp_path, precision="fp16")
    fake = install_fake(monkeypatch, behaviour=Behaviour(half_output_offset=0.5))  # a miscompiled fp16 engine
    with caplog.at_level(logging.WARNING):
        backend = _create(tiny_onnx, config)
    assert backend.precision == "fp32"
    assert "TensorRT fp16 engine is not usable: engine outputs disagree with the reference" in caplog.text
    assert "using the TensorRT fp32 engine because fp16 engine:" in caplog.text
    assert len(calls_named(fake, "Builder.build_serialized_network")) == 2  # fp16, then fp32

    fp16 = engine_request("fp16", tiny_onnx, config, TensorRTInfo("10.3.0", 10, "system"), FAKE_GPU)
    paths = EngineCache(config.cache_dir).paths(tiny_onnx.stem, engine_key(fp16.ingredients()))
    assert not paths.plan.exists() and paths.quarantined_plan.is_file()
    report = json.loads(paths.quarantined_report.read_text())
    assert not report["verification"]["passed"] and report["verification"]["points"][0]["max_abs"] > 0.4
    assert json.loads(paths.failure.read_text())["stage"] == "verify"

    # Next start: the quarantined fp16 engine is not rebuilt, the verified fp32 engine is loaded from the cache.
    fake = install_fake(monkeypatch)
    references = []
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        backend = _create(tiny_onnx, config, reference=lambda: references.append(1))
    assert backend.precision == "fp32" and references == []
    assert calls_named(fake, "Builder.build_serialized_network") == []
    assert "failed before at the verify stage" in caplog.text


def test_no_usable_engine_lists_every_attempt(monkeypatch, tmp_path, tiny_onnx):
    install_fake(monkeypatch, behaviour=Behaviour(build_returns_none=True))
    with pytest.raises(TensorRTError, match=r"no usable TensorRT engine \(fp16 engine: TensorRT built no engine .*"
                                            r" \| fp32 engine: TensorRT built no engine"):
        _create(tiny_onnx, small_config(tmp_path, precision="fp16"))


def test_fp16_resolving_to_fp32_is_attempted_once(monkeypatch, tmp_path, tiny_onnx):
    fake = install_fake(monkeypatch, "11.4.0.106", Behaviour(build_returns_none=True))
    with pytest.raises(TensorRTError, match=r"no usable TensorRT engine \(fp32 engine: [^|]*\)$"):
        _create(tiny_onnx, small_config(tmp_path, precision="fp16"))  # no fp16 ONNX: both requests mean fp32
    assert len(calls_named(fake, "Builder.build_serialized_network")) == 1
