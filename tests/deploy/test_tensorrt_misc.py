"""Small parts of the TensorRT backend: version and Jetson probes, config checks, the supported-operator list."""
import pytest

from fake_tensorrt import make_fake_tensorrt
from synseg_core.deploy.backends.tensorrt import (TensorRTConfig, TensorRTUnavailableError, supported_tensorrt_ops,
                                          unsupported_tensorrt_ops)
from synseg_core.deploy.backends.tensorrt.onnx_info import graph_inputs, load_onnx_structure
from synseg_core.deploy.backends.tensorrt.probe import read_l4t_release, tensorrt_info
from synseg_core.config import ConfigError
from tensorrt_helpers import tiny_onnx  # noqa: F401


@pytest.mark.parametrize("version, major", [("10.3.0", 10), ("10.16.1.11", 10), ("11.4.0.106", 11)])
def test_tensorrt_version_is_read_in_full(version, major):
    info = tensorrt_info(make_fake_tensorrt(version))
    assert (info.version, info.major) == (version, major)
    assert info.distribution == "system"  # no tensorrt wheel is installed here


@pytest.mark.parametrize("version, message", [("8.6.1", "TensorRT 8.6.1 is too old; synseg supports TensorRT 10.x "
                                                        "and 11.x"),
                                              ("unknown", "cannot read the TensorRT version")])
def test_unsupported_tensorrt_versions_are_refused(version, message):
    with pytest.raises(TensorRTUnavailableError, match=message):
        tensorrt_info(_with_version(version))


def _with_version(version):
    module = make_fake_tensorrt("10.3.0")
    module.__version__ = version
    return module


def test_l4t_release_is_read_from_nv_tegra_release(tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
                       "DATE: Wed Jan  8 01:49:37 UTC 2025\n")
    assert read_l4t_release(release) == "R36.4.3"
    assert read_l4t_release(tmp_path / "absent") is None


def test_config_rejects_unknown_keys_and_bad_values():
    assert TensorRTConfig.from_dict({"precision": "fp32", "max_categories": 12}).max_categories == 12
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['max_k'\]; valid keys: \['cache_dir'"):
        TensorRTConfig.from_dict({"max_k": 8})
    with pytest.raises(ConfigError, match=r"'int8' is not one of \['fp32', 'fp16'\]"):
        TensorRTConfig.from_dict({"precision": "int8"})
    with pytest.raises(ConfigError, match="opt_batch=0 and tensorrt.max_batch=4 must satisfy"):
        TensorRTConfig(opt_batch=0)
    with pytest.raises(ConfigError, match="workspace_mb=-1 must be a positive"):
        TensorRTConfig(workspace_mb=-1)


def test_supported_operator_list():
    ops = supported_tensorrt_ops()
    assert {"LayerNormalization", "ConvTranspose", "Sigmoid", "MatMul", "Softmax", "Erf"} <= ops
    assert not {"Unique", "StringNormalizer", "Det", "Compress"} & ops  # rows marked N in onnx-tensorrt's table


def test_tiny_export_uses_only_supported_ops_and_named_dynamic_axes(tiny_onnx):
    model = load_onnx_structure(tiny_onnx)
    assert unsupported_tensorrt_ops(model) == {}
    assert [(i.name, i.dims) for i in graph_inputs(model)] == [("images", ("batch", 3, 16, 16)),
                                                               ("text_embeddings", ("categories", 8))]
    model.graph.node[0].op_type = "Unique"
    model.graph.node[1].domain = "com.microsoft"
    assert unsupported_tensorrt_ops(model) == {"Unique": 1, f"com.microsoft::{model.graph.node[1].op_type}": 1}
