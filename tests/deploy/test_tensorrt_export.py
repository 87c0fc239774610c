"""The TensorRT backend on real synseg exports (tiny-test model): fp32 and fp16 ONNX, TensorRT 10.x and 11.x."""
import pytest
import torch

from fake_tensorrt import calls_named
from synseg_core import get_model_config
from synseg_core.deploy.backends.onnx_backend import OnnxRuntimeBackend
from synseg_core.deploy.backends.tensorrt import create_tensorrt_backend, unsupported_tensorrt_ops
from synseg_core.deploy.backends.tensorrt.onnx_info import load_onnx_structure
from synseg_core.deploy.backends.torch_backend import TorchBackend
from synseg_core.deploy.export import export_onnx
from synseg_core.model.synseg import SynSeg
from tensorrt_helpers import FAKE_GPU, install_fake, small_config

SIZE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = SynSeg(get_model_config("tiny-test")).eval()
    folder = tmp_path_factory.mktemp("synseg_export")
    return model, export_onnx(model, folder / "tiny.onnx", SIZE), export_onnx(model, folder / "tiny-fp16.onnx", SIZE,
                                                                                precision="fp16")


def test_exports_use_only_operators_tensorrt_supports(exported):
    _, fp32, fp16 = exported
    assert unsupported_tensorrt_ops(load_onnx_structure(fp32)) == {}
    assert unsupported_tensorrt_ops(load_onnx_structure(fp16)) == {}


@pytest.mark.parametrize("version, parsed", [("10.3.0", "fp32 file"), ("11.4.0.106", "fp16 file")])
def test_fp16_engine_from_a_real_export_agrees_with_pytorch(monkeypatch, tmp_path, exported, version, parsed):
    model, fp32, fp16 = exported
    fake = install_fake(monkeypatch, version)
    backend = create_tensorrt_backend(fp32, lambda: TorchBackend(model), small_config(tmp_path, precision="fp16"),
                                      fp16_onnx_path=fp16, device="cpu", device_info=FAKE_GPU)
    assert backend.precision == "fp16" and backend.input_size == SIZE
    assert calls_named(fake, "OnnxParser.parse_from_file") == [(str(fp32 if parsed == "fp32 file" else fp16),)]
    assert backend.sidecar["verification"]["reference"] == "torch (fp32, cpu)"
    texts = model.text_embeddings([f"category {i}" for i in range(7)])  # 7 > max_categories: two engine calls
    images = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        want = model(images, texts)
    got = backend.run(images, texts)
    assert got.shape == want.shape == (2, 7, SIZE, SIZE)
    mean_abs, max_abs = small_config(tmp_path).tolerances("fp16")
    assert float((got - want).abs().mean()) <= mean_abs and float((got - want).abs().max()) <= max_abs


def test_fp32_engine_from_a_real_export_matches_onnxruntime(monkeypatch, tmp_path, exported):
    model, fp32, _ = exported
    install_fake(monkeypatch, "11.4.0.106")
    backend = create_tensorrt_backend(fp32, lambda: OnnxRuntimeBackend(fp32), small_config(tmp_path), device="cpu",
                                      device_info=FAKE_GPU)
    images, texts = torch.randn(3, 3, SIZE, SIZE), model.text_embeddings(["a", "b", "c"])
    assert float((backend.run(images, texts) - OnnxRuntimeBackend(fp32).run(images, texts)).abs().max()) <= 1e-5
