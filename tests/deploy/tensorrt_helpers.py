"""Shared pieces of the TensorRT tests: a tiny image-path ONNX, the fake tensorrt module, a fake GPU description."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from fake_tensorrt import Behaviour, make_fake_tensorrt
from synseg_core.deploy.backends.onnx_backend import OnnxRuntimeBackend
from synseg_core.deploy.backends.tensorrt import DeviceInfo, TensorRTConfig
from synseg_core.deploy.export import INPUT_IMAGES, INPUT_TEXT, METADATA_KEY, OPSET, OUTPUT, ExportInfo
from synseg_core.deploy.export_fp16 import convert_to_fp16

SIZE = 16
EMBED_DIM = 8
FAKE_GPU = DeviceInfo(name="NVIDIA Fake GPU", compute_capability="8.7", l4t_release=None)


class TinyImagePath(nn.Module):
    """Same I/O contract as synseg_core.deploy.export: (images [B,3,S,S], text [K,D]) -> probabilities [B,K,S,S]."""

    def __init__(self, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, 3, padding=1)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        feats = self.proj(images)  # [B, D, S, S]
        batch, _, height, width = feats.shape
        tokens = self.norm(feats.flatten(2).transpose(1, 2))  # [B, S*S, D]
        logits = 4.0 * tokens @ text.t()  # [B, S*S, K]
        return torch.sigmoid(logits).transpose(1, 2).reshape(batch, text.shape[0], height, width)


def export_tiny(path: Path, *, seed: int = 0, fp16: bool = False, external: bool = False,
                dynamic_batch: bool = True) -> Path:
    """Export TinyImagePath (opset 17, legacy exporter) with synseg's export metadata."""
    torch.manual_seed(seed)
    module = TinyImagePath().eval()
    axes = {INPUT_IMAGES: {0: "batch"}, INPUT_TEXT: {0: "categories"}, OUTPUT: {0: "batch", 1: "categories"}}
    if not dynamic_batch:
        axes = {INPUT_TEXT: {0: "categories"}, OUTPUT: {1: "categories"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is what synseg uses (opset 17)
        torch.onnx.export(module, (torch.zeros(1 if not dynamic_batch else 2, 3, SIZE, SIZE),
                                   torch.zeros(3, EMBED_DIM)), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_IMAGES, INPUT_TEXT], output_names=[OUTPUT], dynamic_axes=axes)
    proto = onnx.load(str(path))
    if fp16:
        proto = convert_to_fp16(proto)
    info = ExportInfo(input_size=SIZE, embed_dim=EMBED_DIM, precision="fp16" if fp16 else "fp32", opset=OPSET,
                      model_config={}, weights_sha256=f"tiny-{seed}")
    onnx.helper.set_model_props(proto, {METADATA_KEY: info.to_json()})
    if external:
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=0)
    else:
        onnx.save(proto, str(path))
    return path


def install_fake(monkeypatch: pytest.MonkeyPatch, version: str = "10.3.0", behaviour: Behaviour | None = None):
    """Make `import tensorrt` return a fresh fake of `version` for the rest of the test."""
    fake = make_fake_tensorrt(version, behaviour)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


def ort_reference(path: Path):
    """A factory for the trusted reference: ONNX Runtime on the CPU over the fp32 export."""
    return lambda: OnnxRuntimeBackend(path)


def small_config(cache_dir: Path, **overrides) -> TensorRTConfig:
    values = dict(cache_dir=str(cache_dir), precision="fp32", opt_categories=3, max_categories=5, opt_batch=2,
                  max_batch=3, show_progress=False)
    values.update(overrides)
    return TensorRTConfig(**values)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_onnx_fp16(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("tiny16") / "tiny-fp16.onnx", fp16=True)
