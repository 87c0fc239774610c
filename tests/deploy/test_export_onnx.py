"""ONNX export + ONNX Runtime parity with PyTorch; graph checks against TensorRT's operator list."""
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from synseg_core import get_model_config
from synseg_core.deploy.backends.base import BackendError
from synseg_core.deploy.backends.factory import create_backend
from synseg_core.deploy.backends.onnx_backend import OnnxRuntimeBackend
from synseg_core.deploy.export import export_onnx, read_export_info, weights_digest
from synseg_core.model.synseg import SynSeg

TRT_OPS = Path(__file__).parents[2] / "synseg_core" / "deploy" / "backends" / "tensorrt_onnx_ops.txt"


def _text(model, k):
    return model.text_embeddings([f"category {i}" for i in range(k)])


def _check_parity(model, path, size, batches, ks, min_label_agreement=0.999):
    backend = OnnxRuntimeBackend(path)
    for b in batches:
        for k in ks:
            torch.manual_seed(b * 100 + k)
            images, text = torch.randn(b, 3, size, size), _text(model, k)
            with torch.no_grad():
                ref = model(images, text)
            got = backend.run(images, text)
            assert got.shape == ref.shape == (b, k, size, size)
            assert float((got - ref).abs().max()) <= 1e-3
            # identical labels on >= 99.9% of pixels (argmax over categories)
            assert float((got.argmax(1) == ref.argmax(1)).float().mean()) >= min_label_agreement


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    torch.manual_seed(0)
    model = SynSeg(get_model_config("tiny-test")).eval()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", 64)
    return model, path


def test_tiny_parity_dynamic_batch_and_categories(tiny_export):
    model, path = tiny_export
    _check_parity(model, path, 64, batches=(1, 2, 3), ks=(1, 3, 5, 17))


def test_graph_metadata_and_dynamic_axes(tiny_export):
    model, path = tiny_export
    info = read_export_info(path)
    assert info.input_size == 64 and info.opset == 17 and info.precision == "fp32"
    assert info.weights_sha256 == weights_digest(model)
    assert info.model_config["decoder"] == model.cfg.to_dict()["decoder"]
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(proto.graph.input) + list(proto.graph.output)}
    assert dims == {"images": ["batch", 3, 64, 64], "text_embeddings": ["categories", 32],
                    "probabilities": ["batch", "categories", 64, 64]}


def test_only_tensorrt_supported_operators(tiny_export):
    _, path = tiny_export
    supported = {line.strip() for line in TRT_OPS.read_text().splitlines() if line.strip() and line[0] != "#"}
    used = {n.op_type for n in onnx.load(str(path)).graph.node if n.domain in ("", "ai.onnx")}
    assert used and used <= supported, sorted(used - supported)


def test_fp16_export_runs_on_ort_cpu_within_tolerance(tiny_export, tmp_path):
    model, _ = tiny_export
    path = export_onnx(model, tmp_path / "tiny16.onnx", 64, precision="fp16")
    proto = onnx.load(str(path))
    weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert weights, "no fp16 weights in the fp16 export"
    assert {v.type.tensor_type.elem_type for v in proto.graph.input} == {onnx.TensorProto.FLOAT}
    backend = OnnxRuntimeBackend(path)
    assert backend.precision == "fp16"
    images, text = torch.randn(2, 3, 64, 64), _text(model, 4)
    with torch.no_grad():
        ref = model(images, text)
    # stated tolerance for fp16 weights/activations on probabilities in [0, 1]
    assert float((backend.run(images, text) - ref).abs().max()) <= 5e-3


def test_bad_inputs(tiny_export, tmp_path):
    model, path = tiny_export
    backend = OnnxRuntimeBackend(path)
    with pytest.raises(BackendError, match=r"takes images \[B, 3, 64, 64\]"):
        backend.run(torch.zeros(1, 3, 96, 96), _text(model, 2))
    with pytest.raises(BackendError, match="text embeddings must be"):
        backend.run(torch.zeros(1, 3, 64, 64), torch.zeros(2, 7))
    with pytest.raises(BackendError, match="not found"):
        OnnxRuntimeBackend(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(BackendError, match="cannot read ONNX"):
        OnnxRuntimeBackend(tmp_path / "junk.onnx")
    other = SynSeg(get_model_config("tiny-test"))
    with pytest.raises(BackendError, match="other weights"):
        OnnxRuntimeBackend(path, expected_digest=weights_digest(other))
    with pytest.raises(BackendError, match="does not exist"):
        create_backend("onnxruntime", model, onnx_path=tmp_path / "nope.onnx")


def test_factory_exports_once_and_caches(tmp_path):
    model = SynSeg(get_model_config("tiny-test"))
    first = create_backend("onnxruntime", model, cache_dir=tmp_path)
    files = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    second = create_backend("onnxruntime", model, cache_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == mtime and first.input_size == second.input_size == 64


@pytest.mark.slow
@pytest.mark.parametrize("vision_block", ["default", "custom"])
def test_vitb16_parity_at_224(tmp_path, vision_block):
    """Both open_clip vision block types export. With "default" blocks (nn.MultiheadAttention) PyTorch and the graph do
    the same arithmetic: max abs 1e-7, labels identical on >= 99.9% of pixels. With "custom" blocks (synseg's default)
    PyTorch's fused SDPA kernel rounds differently from the exported MatMul/Softmax, and a random-weight ViT-B/16 tower
    amplifies that to 5e-5 on the probabilities (measured; 9e-5 at 448), while the random model's category maps tie
    to ~1e-4: labels then agree on 99.4% of pixels at K=17 (measured), so the label bound there is 99%. The tiny config
    passes the full bounds with "custom" blocks (test_tiny_parity_dynamic_batch_and_categories)."""
    cfg = get_model_config("vitb16-rd64-refined")
    cfg.backbone.pretrained = None  # random weights: no download
    cfg.backbone.vision_block = vision_block
    torch.manual_seed(0)
    model = SynSeg(cfg).eval()
    path = export_onnx(model, tmp_path / "vitb16.onnx", 224)
    _check_parity(model, path, 224, batches=(1,), ks=(1, 3, 17),
                  min_label_agreement=0.999 if vision_block == "default" else 0.99)
