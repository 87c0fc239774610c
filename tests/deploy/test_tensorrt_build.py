"""Engine build: optimisation profile, timing cache, progress monitor, builder options, failure reports."""
import dataclasses
import logging
import threading

import pytest

from fake_tensorrt import Behaviour, calls_named
from synseg_core.deploy.backends.tensorrt import (EngineBuildError, TensorRTError, TensorRTUnavailableError,
                                          create_tensorrt_backend)
from synseg_core.deploy.backends.tensorrt.builder import BuilderOptions, build_engine_bytes
from synseg_core.deploy.backends.tensorrt.callbacks import BuildProgress, CapturedLog
from synseg_core.deploy.backends.tensorrt.precision import resolve_precision
from synseg_core.deploy.backends.tensorrt.profile import InputProfile
from tensorrt_helpers import (FAKE_GPU, export_tiny, install_fake, ort_reference, small_config,  # noqa: F401
                              tiny_onnx)


def _create(onnx, config):
    return create_tensorrt_backend(onnx, ort_reference(onnx), config, device="cpu", device_info=FAKE_GPU)


def test_profile_spans_one_to_max_categories_and_batch(monkeypatch, tmp_path, tiny_onnx):
    fake = install_fake(monkeypatch)
    backend = _create(tiny_onnx, small_config(tmp_path, opt_categories=4, max_categories=9, opt_batch=2,
                                              max_batch=3))
    (profile,) = calls_named(fake, "BuilderConfig.add_optimization_profile")
    assert profile == ({"images": ((1, 3, 16, 16), (2, 3, 16, 16), (3, 3, 16, 16)),
                        "text_embeddings": ((1, 8), (4, 8), (9, 8))},)
    assert (backend.max_batch, backend.max_categories, backend.input_size) == (3, 9, 16)


def test_fixed_batch_export_gets_a_category_only_profile(monkeypatch, tmp_path):
    onnx = export_tiny(tmp_path / "fixed.onnx", dynamic_batch=False)
    fake = install_fake(monkeypatch)
    backend = _create(onnx, small_config(tmp_path))
    (profile,) = calls_named(fake, "BuilderConfig.add_optimization_profile")
    assert list(profile[0]) == ["text_embeddings"]
    assert backend.max_batch == 1


def test_builder_options_reach_the_config(monkeypatch, tmp_path, tiny_onnx):
    fake = install_fake(monkeypatch)
    _create(tiny_onnx, small_config(tmp_path, workspace_mb=64, tf32=False, optimization_level=2))
    assert calls_named(fake, "BuilderConfig.set_memory_pool_limit") == [("WORKSPACE", 64 << 20)]
    assert calls_named(fake, "BuilderConfig.clear_flag") == [("TF32",)]
    assert calls_named(fake, "Builder.build_serialized_network") == [([],)]


def test_timing_cache_is_persisted_and_reused(monkeypatch, tmp_path, tiny_onnx):
    config = small_config(tmp_path)
    fake = install_fake(monkeypatch)
    _create(tiny_onnx, config)
    timing_files = list((tmp_path / "timing").iterdir())
    assert [p.name for p in timing_files] == ["trt10.3.0-sm87-nvidia-fake-gpu.cache"]
    assert calls_named(fake, "BuilderConfig.create_timing_cache") == [(b"",)]
    saved = timing_files[0].read_bytes()
    fake = install_fake(monkeypatch)
    _create(tiny_onnx, dataclasses.replace(config, max_categories=6))  # another engine, same GPU and TensorRT
    assert calls_named(fake, "BuilderConfig.create_timing_cache") == [(saved,)]
    assert timing_files[0].read_bytes() != saved  # updated by the second build


def test_timing_cache_of_another_device_is_replaced(monkeypatch, tmp_path, tiny_onnx, caplog):
    config = small_config(tmp_path)
    install_fake(monkeypatch)
    _create(tiny_onnx, config)
    fake = install_fake(monkeypatch, behaviour=Behaviour(timing_cache_mismatch=True))
    with caplog.at_level(logging.WARNING):
        _create(tiny_onnx, dataclasses.replace(config, max_categories=6))
    assert "does not match this TensorRT/GPU; starting a new one" in caplog.text
    assert calls_named(fake, "BuilderConfig.create_timing_cache")[-1] == (b"",)


def test_timing_cache_can_be_switched_off(monkeypatch, tmp_path, tiny_onnx):
    fake = install_fake(monkeypatch)
    _create(tiny_onnx, small_config(tmp_path, timing_cache=False))
    assert calls_named(fake, "BuilderConfig.create_timing_cache") == []
    assert not (tmp_path / "timing").exists()


def test_progress_monitor_logs_build_phases(monkeypatch, tmp_path, tiny_onnx, caplog):
    install_fake(monkeypatch)
    with caplog.at_level(logging.INFO, logger="synseg_core.deploy.backends.tensorrt"):
        _create(tiny_onnx, small_config(tmp_path, show_progress=True))
    assert "TensorRT build: Building engine (2 steps)" in caplog.text


def _build(trt_version, monkeypatch, onnx, progress=None, behaviour=None):
    fake = install_fake(monkeypatch, trt_version, behaviour)
    plan = resolve_precision("fp32", int(trt_version.split(".")[0]), onnx)
    profile = (InputProfile("images", (1, 3, 16, 16), (1, 3, 16, 16), (2, 3, 16, 16)),
               InputProfile("text_embeddings", (1, 8), (2, 8), (4, 8)))
    captured = CapturedLog()
    return fake, captured, lambda: build_engine_bytes(fake, plan, profile, BuilderOptions(), captured,
                                                      progress=progress)


def test_cancelled_progress_stops_the_build(monkeypatch, tiny_onnx):
    cancel = threading.Event()
    cancel.set()
    progress = BuildProgress(show_bar=False, cancel=cancel)
    _, _, build = _build("10.3.0", monkeypatch, tiny_onnx, progress)
    with pytest.raises(EngineBuildError, match="Build cancelled"):
        build()
    assert progress.phases_seen == ["Building engine", "Tactic selection"]


def test_builder_returning_none_reports_tensorrt_messages(monkeypatch, tiny_onnx):
    _, captured, build = _build("11.4.0.106", monkeypatch, tiny_onnx, behaviour=Behaviour(build_returns_none=True))
    with pytest.raises(EngineBuildError, match=r"built no engine .*\[ERROR\] Error Code 10: Internal Error "
                                               r"\(Could not find any implementation"):
        build()
    assert any("Could not find any implementation" in line for line in captured.lines())


def test_no_cuda_device_is_reported_as_unavailable(monkeypatch, tiny_onnx):
    _, _, build = _build("10.3.0", monkeypatch, tiny_onnx, behaviour=Behaviour(cuda_ok=False))
    with pytest.raises(TensorRTUnavailableError, match="could not create a Builder .*CUDA initialization failure"):
        build()


def test_profile_that_misses_a_dynamic_input_is_refused(monkeypatch, tiny_onnx):
    fake = install_fake(monkeypatch)
    plan = resolve_precision("fp32", 10, tiny_onnx)
    profile = (InputProfile("images", (1, 3, 16, 16), (1, 3, 16, 16), (2, 3, 16, 16)),)
    with pytest.raises(EngineBuildError, match="'text_embeddings' has dynamic shape .* no entry"):
        build_engine_bytes(fake, plan, profile, BuilderOptions(), CapturedLog())
    wrong_size = profile + (InputProfile("text_embeddings", (1, 7), (2, 7), (4, 7)),)
    with pytest.raises(EngineBuildError, match=r"does not fit the network input shape \(-1, 8\)"):
        build_engine_bytes(fake, plan, wrong_size, BuilderOptions(), CapturedLog())


def test_unknown_dynamic_axis_names_the_axis(monkeypatch, tmp_path, tiny_onnx):
    import onnx
    proto = onnx.load(str(tiny_onnx))
    proto.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    path = tmp_path / "height.onnx"
    onnx.save(proto, str(path))
    install_fake(monkeypatch)
    with pytest.raises(TensorRTError, match=r"'images' axis 2 is dynamic \('height'\).*\['batch', 'categories'\]"):
        _create(path, small_config(tmp_path))
