"""ONNX export of the image path: CLIP image tower up to the deepest extracted block, decoder, upsampler, sigmoid.

Text embeddings are an input with a dynamic category axis, so a new query never needs a new export or engine; the
image batch axis is dynamic too (1..max_batch, for multi-camera batching). One fixed input size per export.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from ..model.synseg import SynSeg
from ..outputs import atomic_file
from .capabilities import EXPORT_PRECISIONS

log = logging.getLogger(__name__)

OPSET = 17
INPUT_IMAGES = "images"
INPUT_TEXT = "text_embeddings"
OUTPUT = "probabilities"
METADATA_KEY = "synseg"


class ExportError(RuntimeError):
    """Export failed or an ONNX file is not a synseg export; the message says why."""


@dataclass
class ExportInfo:
    """What an exported file holds (stored as JSON in the ONNX metadata under `synseg`)."""

    input_size: int
    embed_dim: int
    precision: str
    opset: int
    model_config: dict
    weights_sha256: str

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


class ImagePath(nn.Module):
    """The exported graph: (images [B,3,S,S], text [K,D]) -> probabilities [B,K,S,S]."""

    def __init__(self, model: SynSeg, input_size: int):
        super().__init__()
        self.model = model
        self.input_size = input_size

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        # A reshape with the fixed size as constants keeps the output's spatial dims static in the graph.
        return self.model(images, text).reshape(images.shape[0], text.shape[0], self.input_size, self.input_size)


@contextlib.contextmanager
def _export_mode():
    """PyTorch's fused MHA fast path exports to an op ONNX lacks; turn it off while tracing."""
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings():
            # Shape checks in Python are constant for the one input size an export has.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def export_onnx(model: SynSeg, path: str | Path, input_size: int, *, precision: str = "fp32",
                check: bool = True) -> Path:
    """Export the image path to `path` (written atomically) and return it.

    Args:
        input_size: the square input size S (a multiple of the patch size).
        precision: "fp32"; "fp16": half weights and activations, with LayerNorm, Softmax and reductions kept in fp32
            (what TensorRT 11's strongly typed networks need for an fp16 engine); "int8": the CLIP tower's weight
            matmuls dynamically quantized for ONNX Runtime on the CPU (export_int8.py). Inputs and outputs stay fp32.
        check: run the ONNX checker on the result.
    """
    if precision not in EXPORT_PRECISIONS:
        raise ExportError(f"precision {precision!r} is not one of {list(EXPORT_PRECISIONS)}")
    patch = model.backbone.patch_size
    if input_size <= 0 or input_size % patch:
        raise ExportError(f"input_size must be a positive multiple of the patch size {patch}, got {input_size}")
    path = Path(path)
    model = model.eval().cpu()
    graph = ImagePath(model, input_size)
    images = torch.zeros(2, 3, input_size, input_size)
    text = torch.zeros(3, model.backbone.embed_dim)
    with atomic_file(path) as tmp:
        with _export_mode(), torch.no_grad():
            torch.onnx.export(
                graph, (images, text), str(tmp), dynamo=False, opset_version=OPSET, do_constant_folding=True,
                input_names=[INPUT_IMAGES, INPUT_TEXT], output_names=[OUTPUT],
                dynamic_axes={INPUT_IMAGES: {0: "batch"}, INPUT_TEXT: {0: "categories"},
                              OUTPUT: {0: "batch", 1: "categories"}})
        proto = onnx.load(tmp)
        if precision == "fp16":
            from .export_fp16 import convert_to_fp16

            proto = convert_to_fp16(proto)
        elif precision == "int8":
            from .export_int8 import quantize_int8

            proto = quantize_int8(proto)
        info = ExportInfo(input_size=input_size, embed_dim=model.backbone.embed_dim, precision=precision,
                          opset=OPSET, model_config=model.cfg.to_dict(), weights_sha256=weights_digest(model))
        onnx.helper.set_model_props(proto, {METADATA_KEY: info.to_json()})
        if check:
            onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, tmp)
    log.info("exported %s (%s, input %dx%d)", path, precision, input_size, input_size)
    return path


def weights_digest(model: SynSeg) -> str:
    """SHA-256 over every tensor of the model (names, shapes, bytes): identifies the weights an export came from."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def default_export_path(model: SynSeg, cache_dir: str | Path, input_size: int, precision: str = "fp32") -> Path:
    """Where an automatic export of this model lives: keyed by weights digest, size and precision."""
    name = f"{model.cfg.name}-{weights_digest(model)[:16]}-{input_size}-{precision}.onnx"
    return Path(cache_dir).expanduser() / name


def read_export_info(path: str | Path) -> ExportInfo:
    """The synseg metadata of an exported ONNX file (without loading its weights)."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for corrupt files
        raise ExportError(f"cannot read ONNX file {path}: {exc}") from exc
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        raise ExportError(f"{path} has no '{METADATA_KEY}' metadata: it was not written by synseg_core.deploy.export")
    return ExportInfo(**json.loads(props[METADATA_KEY]))
