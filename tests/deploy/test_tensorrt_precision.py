"""The precision resolution table for TensorRT 10.x and 11.x (resolve_precision), and its effect on the build."""
import logging

import pytest

from synseg_core.deploy.backends.tensorrt import TensorRTError, create_tensorrt_backend, resolve_precision
from fake_tensorrt import calls_named
from tensorrt_helpers import (FAKE_GPU, install_fake, ort_reference, small_config, tiny_onnx,  # noqa: F401
                              tiny_onnx_fp16)


@pytest.mark.parametrize("major", [10, 11, 12])
def test_fp32_is_strongly_typed_from_the_fp32_onnx(major, tiny_onnx, tiny_onnx_fp16):
    plan = resolve_precision("fp32", major, tiny_onnx, tiny_onnx_fp16)
    assert (plan.resolved, plan.typing, plan.onnx_path, plan.builder_flags) == ("fp32", "strong", tiny_onnx, ())
    # 10.x opts in to strong typing; 11.x is always strongly typed and the flag is deprecated there.
    assert plan.network_flags == (("STRONGLY_TYPED",) if major == 10 else ())


def test_fp16_on_10x_is_the_builder_flag_on_the_fp32_onnx(tiny_onnx, tiny_onnx_fp16):
    plan = resolve_precision("fp16", 10, tiny_onnx, tiny_onnx_fp16)
    assert (plan.resolved, plan.typing, plan.onnx_path) == ("fp16", "weak", tiny_onnx)
    assert plan.builder_flags == ("FP16",) and plan.network_flags == ()


def test_fp16_on_11x_needs_the_fp16_onnx(tiny_onnx, tiny_onnx_fp16):
    plan = resolve_precision("fp16", 11, tiny_onnx, tiny_onnx_fp16)
    assert (plan.resolved, plan.typing, plan.onnx_path) == ("fp16", "strong", tiny_onnx_fp16)
    assert plan.builder_flags == () and plan.network_flags == ()


def test_fp16_on_11x_without_fp16_onnx_resolves_to_fp32_loudly(tiny_onnx, caplog):
    with caplog.at_level(logging.WARNING):
        plan = resolve_precision("fp16", 11, tiny_onnx, None)
    assert (plan.requested, plan.resolved, plan.onnx_path) == ("fp16", "fp32", tiny_onnx)
    assert "no fp16 ONNX was given" in plan.note and "built fp32" in caplog.text


def test_fp16_on_11x_with_an_fp32_file_posing_as_fp16_resolves_to_fp32(tiny_onnx):
    plan = resolve_precision("fp16", 11, tiny_onnx, tiny_onnx)
    assert plan.resolved == "fp32" and "holds no float16 weights" in plan.note


def test_unknown_precision_names_the_choices(tiny_onnx):
    with pytest.raises(TensorRTError, match=r"'int8' is not supported; use one of \['fp32', 'fp16'\]"):
        resolve_precision("int8", 10, tiny_onnx)


@pytest.mark.parametrize("version, fp16_onnx, flags, label", [
    ("10.3.0", False, ["FP16", "TF32"], "fp16"),         # JetPack 6
    ("10.16.1.11", False, ["FP16", "TF32"], "fp16"),     # last 10.x wheels
    ("11.4.0.106", True, ["TF32"], "fp16"),
    ("11.4.0.106", False, ["TF32"], "fp32"),             # never labelled fp16 when built fp32
])
def test_built_engine_carries_the_resolved_precision(monkeypatch, tmp_path, tiny_onnx, tiny_onnx_fp16,
                                                     version, fp16_onnx, flags, label):
    fake = install_fake(monkeypatch, version)
    backend = create_tensorrt_backend(tiny_onnx, ort_reference(tiny_onnx), small_config(tmp_path, precision="fp16"),
                                      fp16_onnx_path=tiny_onnx_fp16 if fp16_onnx else None, device="cpu",
                                      device_info=FAKE_GPU)
    assert backend.precision == label == backend.sidecar["ingredients"]["precision"]["resolved"]
    assert calls_named(fake, "Builder.build_serialized_network") == [(flags,)]
    parsed = calls_named(fake, "OnnxParser.parse_from_file")
    assert parsed == [(str(tiny_onnx_fp16 if fp16_onnx else tiny_onnx),)]
    assert calls_named(fake, "Builder.create_network") == [(0,)]  # weak typing on 10.x, default on 11.x


@pytest.mark.parametrize("version, network_flags", [("10.3.0", 1 << 1), ("11.4.0.106", 0)])
def test_fp32_engine_network_flags_per_version(monkeypatch, tmp_path, tiny_onnx, version, network_flags):
    fake = install_fake(monkeypatch, version)
    backend = create_tensorrt_backend(tiny_onnx, ort_reference(tiny_onnx), small_config(tmp_path, precision="fp32"),
                                      device="cpu", device_info=FAKE_GPU)
    assert backend.precision == "fp32"
    assert calls_named(fake, "Builder.create_network") == [(network_flags,)]
    assert calls_named(fake, "BuilderConfig.set_flag") == []
