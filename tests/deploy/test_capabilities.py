"""The one table of backends x devices x precisions: what it derives, and that the factory, the backends, the
exporter and the command lines read it rather than lists of their own."""
import logging

import pytest

from synseg_core.deploy import capabilities as caps
from synseg_core.deploy.backends import factory, torch_backend
from synseg_core.deploy.backends.base import BackendError
from synseg_core.deploy.backends.tensorrt import config as trt_config
from training import build_engine, export as export_cli


def test_derived_lists_follow_the_table():
    assert caps.backend_precisions("torch") == ("fp32", "fp16", "bf16")
    assert caps.backend_precisions("onnxruntime") == ("fp32", "fp16", "int8")
    assert caps.backend_precisions("tensorrt") == ("fp32", "fp16")
    assert caps.EXPORT_PRECISIONS == ("fp32", "fp16", "int8")  # what ONNX runtimes run: no bf16
    assert caps.runners_of("int8") == ["onnxruntime on cpu"]
    assert {b for b, _ in caps.AUTO_ORDER} == set(caps.CONCRETE_BACKENDS)
    assert all(p in caps.PRECISIONS for ps in caps.SUPPORT.values() for p in ps)
    assert set(caps.PRECISION_NOTES) == set(caps.PRECISIONS)


def test_readers_use_the_table():
    assert factory.BACKENDS is caps.BACKENDS and factory.PRECISIONS is caps.PRECISIONS
    assert torch_backend.PRECISIONS == caps.backend_precisions("torch")
    assert trt_config.PRECISIONS == caps.backend_precisions("tensorrt")
    assert export_cli.parse_args(["--checkpoint", "x", "--out", "y", "--precision", "int8"]).precision == "int8"
    assert build_engine.parse_args(["--onnx", "x", "--precision", "fp32"]).precision == "fp32"
    for parse, argv in ((export_cli.parse_args, ["--checkpoint", "x", "--out", "y", "--precision", "bf16"]),
                        (build_engine.parse_args, ["--onnx", "x", "--precision", "int8"])):
        with pytest.raises(SystemExit):
            parse(argv)


@pytest.mark.parametrize("backend,device,precision,problem", [
    ("torch", "cpu", "int8", "precision 'int8' is ONNX Runtime's CPU quantization; backend 'torch' runs fp32, fp16, "
                             "bf16: use backend 'onnxruntime' or 'auto' on device 'cpu'"),
    ("auto", "cuda", "int8", "precision 'int8' is ONNX Runtime's CPU quantization; no backend runs it on 'cuda': use "
                             "backend 'onnxruntime' or 'auto' on device 'cpu'"),
    ("tensorrt", "cuda", "bf16", "precision 'bf16' is PyTorch autocast; backend 'tensorrt' runs fp32, fp16: use "
                                 "backend 'torch' or 'auto'"),
    ("auto", "cpu", "int4", "precision 'int4' is not supported; use one of ['fp32', 'fp16', 'int8', 'bf16']"),
    ("onnxruntime", "cpu", "fp16", None),  # runs as fp32 on the CPU
    ("tensorrt", "cpu", "fp32", None),  # not an error of the precision: selection says there is no GPU
    ("auto", "cpu", "bf16", None),
])
def test_precision_problems_name_the_choices(backend, device, precision, problem):
    assert caps.precision_problem(backend, device, precision) == problem


def test_step_precision_falls_back_to_fp32():
    assert caps.step_precision("onnxruntime", "cpu", "fp16") == "fp32"
    assert caps.step_precision("onnxruntime", "cuda", "fp16") == "fp16"
    assert caps.step_precision("torch", "cpu", "int8") == "fp32"
    assert caps.step_precision("torch", "cpu", "bf16") == "bf16"


def test_auto_int8_skips_what_never_runs_int8_with_the_tables_reason(tiny_model, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="synseg_core.deploy.backends.selection"):
        backend = factory.create_backend("auto", tiny_model, device="cpu", precision="int8", cache_dir=tmp_path)
    assert (backend.name, backend.precision) == ("onnxruntime", "int8")
    assert "tensorrt (cuda) skipped: precision 'int8' is ONNX Runtime's CPU quantization; backend 'tensorrt'" \
        in caplog.text
    with pytest.raises(BackendError, match=r"\(asked for backend 'tensorrt' on 'cuda'\)"):
        factory.create_backend("tensorrt", tiny_model, device="cuda", precision="bf16", cache_dir=tmp_path)
