"""fp32 -> fp16 ONNX conversion for TensorRT 11's strongly typed networks (where fp16 lives in the graph).

Weights and most activations become fp16; LayerNormalization, Softmax and reductions stay fp32 (their sums overflow
or lose precision in fp16), and the graph's inputs and outputs stay fp32 so callers feed the same buffers.
The conversion itself is onnxconverter-common's. Its final clean-up pass (`remove_unnecessary_cast_node`, which only
drops redundant Cast pairs) crashes on casts that feed several nodes (1.16.0: "'list' object has no attribute
'input'"), so it is skipped; ONNX Runtime and TensorRT fold such pairs themselves. For the same reason the fp32 boundary
casts are added here instead of through `keep_io_types`.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

FP32_OPS = ["LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceMax", "Pow", "Sqrt", "Erf"]


def _keep_fp32_io(model: onnx.ModelProto) -> None:
    """Make every fp16 graph input/output fp32 again, with Cast nodes at the boundary."""
    graph = model.graph
    casts = []
    for value in graph.input:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            inner = value.name + "_fp16"
            for node in graph.node:
                node.input[:] = [inner if n == value.name else n for n in node.input]
            casts.append(helper.make_node("Cast", [value.name], [inner], to=TensorProto.FLOAT,
                                          name=f"{value.name}_to_fp16"))
            casts[-1].attribute[0].i = TensorProto.FLOAT16
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    for value in graph.output:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            inner = value.name + "_fp16"
            for node in graph.node:
                node.output[:] = [inner if n == value.name else n for n in node.output]
                node.input[:] = [inner if n == value.name else n for n in node.input]
            graph.node.append(helper.make_node("Cast", [inner], [value.name], to=TensorProto.FLOAT,
                                               name=f"{value.name}_to_fp32"))
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    for i, cast in enumerate(casts):
        graph.node.insert(i, cast)


def _inline_identity_initializers(model: onnx.ModelProto) -> None:
    """The exporter shares repeated constants through Identity nodes; give each its own initializer so the
    converter sees (and converts) them as weights."""
    inits = {t.name: t for t in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            model.graph.initializer.append(copy)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def _retarget_casts(model: onnx.ModelProto) -> None:
    """The converter marks the outputs of the graph's own Cast(to=float) nodes as fp16 but leaves their `to`
    attribute at float; point those casts at fp16 so the types agree."""
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    for node in model.graph.node:
        if node.op_type == "Cast" and types.get(node.output[0]) == TensorProto.FLOAT16:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxconverter_common import float16

    _inline_identity_initializers(model)
    cleanup = float16.remove_unnecessary_cast_node
    float16.remove_unnecessary_cast_node = lambda graph: None
    try:
        half = float16.convert_float_to_float16(model, keep_io_types=False, op_block_list=FP32_OPS)
    finally:
        float16.remove_unnecessary_cast_node = cleanup
    _retarget_casts(half)
    _keep_fp32_io(half)
    return half
