"""ONNX Runtime runs on torch tensors through I/O binding: results equal a plain session.run, inputs of any layout
and dtype are bound as the graph declares them (fp32 or fp16), and on CUDA nothing passes through host memory."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from synseg_core.deploy.backends.base import BackendError
from synseg_core.deploy.backends.onnx_backend import OnnxRuntimeBackend
from synseg_core.deploy.export import INPUT_IMAGES, INPUT_TEXT, METADATA_KEY, OPSET, OUTPUT, ExportInfo
from tensorrt_helpers import EMBED_DIM, SIZE, tiny_onnx  # noqa: F401


def plain_run(path, images, text):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_IMAGES: images.numpy(), INPUT_TEXT: text.numpy()})[0]


def test_bound_run_equals_a_plain_run_for_any_input_layout(tiny_onnx):
    backend = OnnxRuntimeBackend(tiny_onnx)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, SIZE, SIZE, 3, generator=g).permute(0, 3, 1, 2)  # channels-last memory
    text = torch.randn(EMBED_DIM, 4, generator=g).t()  # transposed
    got = backend.run(images, text)
    assert got.shape == (2, 4, SIZE, SIZE) and got.dtype == torch.float32 and got.device.type == "cpu"
    np.testing.assert_allclose(got.numpy(), plain_run(tiny_onnx, images.contiguous(), text.contiguous()), atol=1e-6)


def half_precision_graph(path, input_type=TensorProto.FLOAT16):
    """probabilities = sigmoid(mean over channels of images + sum over D of text), with fp16 (or other) I/O."""
    images = helper.make_tensor_value_info(INPUT_IMAGES, input_type, ["batch", 3, SIZE, SIZE])
    text = helper.make_tensor_value_info(INPUT_TEXT, input_type, ["categories", EMBED_DIM])
    out = helper.make_tensor_value_info(OUTPUT, input_type, ["batch", "categories", SIZE, SIZE])
    axes_d = helper.make_tensor("axes_d", TensorProto.INT64, [1], [1])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, -1, 1, 1])
    nodes = [helper.make_node("ReduceMean", [INPUT_IMAGES], ["mean"], axes=[1], keepdims=1),
             helper.make_node("ReduceSum", [INPUT_TEXT, "axes_d"], ["sum"], keepdims=0),
             helper.make_node("Reshape", ["sum", "shape"], ["sum4"]),
             helper.make_node("Add", ["mean", "sum4"], ["logits"]),
             helper.make_node("Sigmoid", ["logits"], [OUTPUT])]
    graph = helper.make_graph(nodes, "half", [images, text], [out], initializer=[axes_d, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    info = ExportInfo(input_size=SIZE, embed_dim=EMBED_DIM, precision="fp16", opset=OPSET, model_config={},
                      weights_sha256="half")
    helper.set_model_props(model, {METADATA_KEY: info.to_json()})
    onnx.save(model, str(path))
    return path


def test_fp16_inputs_and_outputs_are_bound_as_fp16(tmp_path):
    backend = OnnxRuntimeBackend(half_precision_graph(tmp_path / "half.onnx"))
    g = torch.Generator().manual_seed(1)
    images, text = torch.randn(3, 3, SIZE, SIZE, generator=g), torch.randn(2, EMBED_DIM, generator=g)
    got = backend.run(images, text)
    want = torch.sigmoid(images.half().float().mean(1, keepdim=True) + text.half().float().sum(1).view(1, -1, 1, 1))
    assert got.dtype == torch.float32 and got.shape == (3, 2, SIZE, SIZE)
    torch.testing.assert_close(got, want, atol=2e-3, rtol=0)  # fp16 arithmetic inside the graph


def test_a_graph_with_unbindable_types_is_refused(tmp_path):
    with pytest.raises(BackendError, match=r"types \{.*'tensor\(double\)'.*the image path binds"):
        OnnxRuntimeBackend(half_precision_graph(tmp_path / "double.onnx", TensorProto.DOUBLE))


cuda_ort = [pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available() or "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="needs a CUDA GPU and onnxruntime-gpu (CUDAExecutionProvider)")]


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=cuda_ort)])
def test_cuda_runs_on_device_tensors(tiny_onnx, device):
    cpu, gpu = OnnxRuntimeBackend(tiny_onnx), OnnxRuntimeBackend(tiny_onnx, device=device)
    g = torch.Generator().manual_seed(2)
    images, text = torch.randn(2, 3, SIZE, SIZE, generator=g), torch.randn(3, EMBED_DIM, generator=g)
    got = gpu.run(images.to(device) * 1.0, text.to(device))  # produced on torch's stream just before
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), cpu.run(images, text), atol=1e-4, rtol=0)
