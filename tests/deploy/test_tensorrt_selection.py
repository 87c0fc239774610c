"""select_backend: the `auto` order and the logged reason for every skipped step (fake TensorRT, real ONNX Runtime)."""
import dataclasses
import logging

import pytest

from fake_tensorrt import Behaviour
from synseg_core import get_model_config
from synseg_core.deploy.backends.base import BackendError
from synseg_core.deploy.backends.onnx_backend import OnnxRuntimeBackend
from synseg_core.deploy.backends.selection import BackendFactories, RuntimeEnvironment, select_backend
from synseg_core.deploy.backends.tensorrt import create_tensorrt_backend
from synseg_core.deploy.backends.torch_backend import TorchBackend
from synseg_core.model.synseg import SynSeg
from tensorrt_helpers import FAKE_GPU, install_fake, ort_reference, small_config, tiny_onnx  # noqa: F401


@pytest.fixture(scope="module")
def torch_factory():
    model = SynSeg(get_model_config("tiny-test")).eval()
    return lambda device: TorchBackend(model, device=device)


def _factories(tiny_onnx, tmp_path, torch_factory, with_tensorrt=True):
    def tensorrt(device):
        # No CUDA here: the fake engine runs on the CPU, described as a fake GPU.
        return create_tensorrt_backend(tiny_onnx, ort_reference(tiny_onnx), small_config(tmp_path), device="cpu",
                                       device_info=FAKE_GPU)
    return BackendFactories(torch=torch_factory, onnxruntime=lambda device: OnnxRuntimeBackend(tiny_onnx, device),
                            tensorrt=tensorrt if with_tensorrt else None)


def test_auto_on_this_machine_skips_tensorrt_and_cuda_steps(tiny_onnx, tmp_path, torch_factory, caplog):
    environment = RuntimeEnvironment.probe()
    if environment.tensorrt_problem is None or environment.cuda_available:
        pytest.skip("this test describes a machine without TensorRT and CUDA")
    with caplog.at_level(logging.INFO, logger="synseg_core.deploy.backends.selection"):
        selection = select_backend("auto", _factories(tiny_onnx, tmp_path, torch_factory))
    assert selection.backend.name == "onnxruntime" and selection.backend.device.type == "cpu"
    assert [step for step, _ in selection.skipped] == ["tensorrt (cuda)", "onnxruntime (cuda)", "torch (cuda)"]
    reasons = dict(selection.skipped)
    no_cuda = "no CUDA device (torch.cuda.is_available() is False)"
    assert reasons["tensorrt (cuda)"].startswith("tensorrt cannot be imported (ModuleNotFoundError")
    assert reasons["tensorrt (cuda)"].endswith(no_cuda)
    assert reasons["onnxruntime (cuda)"].startswith(f"{no_cuda}; onnxruntime has no CUDAExecutionProvider")
    assert reasons["torch (cuda)"] == no_cuda
    assert "backend tensorrt (cuda) skipped: tensorrt cannot be imported" in caplog.text
    assert "image-path backend: onnxruntime on cpu" in caplog.text


def test_auto_picks_tensorrt_when_importable_with_cuda(monkeypatch, tiny_onnx, tmp_path, torch_factory):
    install_fake(monkeypatch)
    environment = dataclasses.replace(RuntimeEnvironment.probe(), cuda_available=True)
    assert environment.tensorrt_problem is None  # the fake imports
    selection = select_backend("auto", _factories(tiny_onnx, tmp_path, torch_factory), environment=environment)
    assert selection.backend.name == "tensorrt" and selection.skipped == []


def test_auto_falls_back_with_each_reason_when_tensorrt_fails(monkeypatch, tiny_onnx, tmp_path, torch_factory,
                                                                caplog):
    install_fake(monkeypatch, behaviour=Behaviour(build_returns_none=True))
    environment = dataclasses.replace(RuntimeEnvironment.probe(), cuda_available=True)
    with caplog.at_level(logging.INFO, logger="synseg_core.deploy.backends.selection"):
        selection = select_backend("auto", _factories(tiny_onnx, tmp_path, torch_factory), environment=environment)
    assert selection.backend.name == "onnxruntime" and selection.backend.device.type == "cpu"
    reasons = dict(selection.skipped)
    assert reasons["tensorrt (cuda)"].startswith("TensorRTError: no usable TensorRT engine (fp32 engine: TensorRT "
                                                 "built no engine")
    assert reasons["onnxruntime (cuda)"].startswith("onnxruntime has no CUDAExecutionProvider (available: ")
    assert "torch.cuda.is_available() is False" in reasons["torch (cuda)"]  # TorchBackend's own refusal
    assert "backend tensorrt (cuda) failed: TensorRTError: no usable TensorRT engine" in caplog.text


def test_auto_without_onnx_ends_at_torch(tiny_onnx, tmp_path, torch_factory):
    factories = BackendFactories(torch=torch_factory)
    selection = select_backend("auto", factories, device="cpu")
    assert selection.backend.name == "torch"
    assert dict(selection.skipped) == {
        "tensorrt (cuda)": "no tensorrt backend was configured (no model file for it)",
        "onnxruntime (cuda)": "no onnxruntime backend was configured (no model file for it)",
        "torch (cuda)": "device 'cpu' was requested",
        "onnxruntime (cpu)": "no onnxruntime backend was configured (no model file for it)"}


def test_explicit_onnxruntime_on_cpu(tiny_onnx, tmp_path, torch_factory):
    selection = select_backend("onnxruntime", _factories(tiny_onnx, tmp_path, torch_factory), device="cpu")
    assert selection.backend.name == "onnxruntime"
    ((step, reason),) = selection.skipped
    assert step == "onnxruntime (cuda)" and reason.startswith("device 'cpu' was requested")


def test_explicit_tensorrt_without_tensorrt_fails_with_the_reason(tiny_onnx, tmp_path, torch_factory):
    environment = RuntimeEnvironment(cuda_available=True, tensorrt_problem="tensorrt cannot be imported (test)",
                                     onnxruntime_problem=None, onnxruntime_providers=("CPUExecutionProvider",))
    with pytest.raises(BackendError, match=r"no usable backend for 'tensorrt' on cuda: tensorrt \(cuda\): "
                                           r"tensorrt cannot be imported \(test\)$"):
        select_backend("tensorrt", _factories(tiny_onnx, tmp_path, torch_factory), environment=environment)


def test_unknown_choice_lists_the_choices(tiny_onnx, tmp_path, torch_factory):
    with pytest.raises(BackendError, match=r"'trt' is not one of \['auto', 'torch', 'onnxruntime', 'tensorrt'\]"):
        select_backend("trt", _factories(tiny_onnx, tmp_path, torch_factory))
