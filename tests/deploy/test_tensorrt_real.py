"""Real TensorRT on a real GPU (skipped, with the reason, wherever TensorRT or CUDA is missing)."""
import importlib
import sys

import pytest
import torch

from synseg_core.deploy.backends.selection import BackendFactories, RuntimeEnvironment, select_backend
from synseg_core.deploy.backends.tensorrt import create_tensorrt_backend
from tensorrt_helpers import EMBED_DIM, SIZE, ort_reference, small_config, tiny_onnx  # noqa: F401

pytestmark = pytest.mark.gpu


def _require_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)")


def _require_tensorrt():
    _require_cuda()
    if "tensorrt" in sys.modules and hasattr(sys.modules["tensorrt"], "behaviour"):
        pytest.skip("the fake tensorrt module is installed")
    try:
        return importlib.import_module("tensorrt")
    except (ImportError, OSError) as exc:
        pytest.skip(f"needs NVIDIA TensorRT 10.x/11.x ({type(exc).__name__}: {exc})")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_engine_is_built_verified_cached_and_run_on_cuda_tensors(tmp_path, tiny_onnx, precision):
    trt = _require_tensorrt()
    config = small_config(tmp_path, precision=precision)
    backend = create_tensorrt_backend(tiny_onnx, ort_reference(tiny_onnx), config, device="cuda")
    assert backend.sidecar["ingredients"]["tensorrt"]["version"] == trt.__version__
    assert backend.sidecar["verification"]["passed"]
    # TensorRT 11 with no fp16 ONNX builds fp32 and says so.
    assert backend.precision == (precision if int(trt.__version__.split(".")[0]) < 11 else "fp32")
    images = torch.randn(3, 3, SIZE, SIZE, device="cuda")
    text = torch.nn.functional.normalize(torch.randn(7, EMBED_DIM, device="cuda"), dim=-1)
    side_stream = torch.cuda.Stream()
    with torch.cuda.stream(side_stream):  # the caller's stream is not the default one
        got = backend.run(images, text)
        got_cpu = got.cpu()
    assert got.device.type == "cuda"
    want = ort_reference(tiny_onnx)().run(images.cpu(), text.cpu())
    mean_abs, max_abs = config.tolerances(backend.precision)
    difference = (got_cpu - want).abs()
    assert float(difference.mean()) <= mean_abs and float(difference.max()) <= max_abs
    again = create_tensorrt_backend(tiny_onnx, ort_reference(tiny_onnx), config, device="cuda")
    assert again.sidecar == backend.sidecar  # loaded from the cache, not rebuilt


def test_auto_on_a_gpu_machine_prefers_a_cuda_backend(tmp_path, tiny_onnx):
    _require_cuda()
    from synseg_core import get_model_config
    from synseg_core.deploy.backends.onnx_backend import OnnxRuntimeBackend
    from synseg_core.deploy.backends.torch_backend import TorchBackend
    from synseg_core.model.synseg import SynSeg

    model = SynSeg(get_model_config("tiny-test")).eval()
    factories = BackendFactories(torch=lambda device: TorchBackend(model, device=device),
                                 onnxruntime=lambda device: OnnxRuntimeBackend(tiny_onnx, device))
    selection = select_backend("auto", factories, device="cuda", environment=RuntimeEnvironment.probe())
    assert selection.backend.device.type == "cuda"
    assert selection.skipped[0][0] == "tensorrt (cuda)"  # no TensorRT factory was configured
