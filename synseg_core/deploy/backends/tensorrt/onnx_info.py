"""What the TensorRT backend reads from an ONNX file without running it: fingerprint, inputs, weight dtypes, ops."""
from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from ....model.checkpoint import file_sha256
from .errors import TensorRTError

SUPPORTED_OPS_FILE = Path(__file__).resolve().parent.parent / "tensorrt_onnx_ops.txt"


def require_onnx_file(path: str | Path) -> Path:
    """`path` as a Path; FileNotFoundError naming it when there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {str(path)!r} does not exist; export it first (training/export.py)")
    return path


def load_onnx_structure(path: str | Path) -> onnx.ModelProto:
    """Load the graph of an ONNX file without its external weights."""
    path = require_onnx_file(path)
    try:
        return onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise TensorRTError(f"{str(path)!r} is not a readable ONNX model ({type(exc).__name__}: {exc})") from exc


def _all_tensors(graph: onnx.GraphProto):
    """Initializers and constant tensors of a graph and its subgraphs (any of them may hold external data)."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_tensors(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _all_tensors(sub)


def external_data_files(model: onnx.ModelProto) -> list[str]:
    """Relative locations of every external-data file the model refers to, sorted and unique."""
    locations = set()
    for tensor in _all_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.update(entry.value for entry in tensor.external_data if entry.key == "location")
    return sorted(locations)


def fingerprint_onnx(path: str | Path) -> dict:
    """Content hashes of an ONNX file and of every external weight file it uses.

    Returns:
        {"sha256": hash of the .onnx bytes, "external": {relative location: hash}}; a changed external weight
        file therefore changes the fingerprint even though the .onnx file itself did not change.
    """
    path = Path(path)
    model = load_onnx_structure(path)
    external = {}
    for location in external_data_files(model):
        data_path = path.parent / location
        if not data_path.is_file():
            raise FileNotFoundError(f"ONNX file {str(path)!r} stores weights in {location!r}, but "
                                    f"{str(data_path)!r} does not exist; copy it next to the .onnx file")
        external[location] = file_sha256(data_path)
    return {"sha256": file_sha256(path), "external": external}


@dataclass(frozen=True)
class OnnxInput:
    """A graph input: name, ONNX element type and dims (int = fixed, str = named dynamic axis, None = unnamed)."""

    name: str
    elem_type: int
    dims: tuple[int | str | None, ...]


def graph_inputs(model: onnx.ModelProto) -> list[OnnxInput]:
    """The real inputs of the graph (initializers listed as inputs by old exporters are left out)."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = []
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value > 0:
                dims.append(dim.dim_value)
            else:
                dims.append(dim.dim_param or None)
        inputs.append(OnnxInput(value.name, value.type.tensor_type.elem_type, tuple(dims)))
    return inputs


def has_float16_weights(model: onnx.ModelProto) -> bool:
    """True when some weight of the graph is stored as float16 (what an fp16 export for TensorRT 11 has)."""
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in _all_tensors(model.graph))


@functools.lru_cache(maxsize=1)
def supported_tensorrt_ops() -> frozenset[str]:
    """ONNX operators TensorRT's parser supports (synseg_core/deploy/backends/tensorrt_onnx_ops.txt)."""
    lines = SUPPORTED_OPS_FILE.read_text().splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def unsupported_tensorrt_ops(model: onnx.ModelProto) -> dict[str, int]:
    """Operators of the graph (subgraphs included) that TensorRT does not support, with their counts.

    Operators from a non-default domain are reported as "domain::Op": TensorRT would need a plugin for them.
    """
    supported = supported_tensorrt_ops()
    counts: Counter[str] = Counter()

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                counts[f"{node.domain}::{node.op_type}"] += 1
            elif node.op_type not in supported:
                counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)
                for sub in attr.graphs:
                    visit(sub)

    visit(model.graph)
    return dict(counts)
