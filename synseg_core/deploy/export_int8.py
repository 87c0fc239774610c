"""fp32 -> int8 ONNX for ONNX Runtime on the CPU: dynamic quantization of the weight matmuls.

The CLIP tower's linear layers (MatMul nodes with a constant weight) get int8 weights, one scale per output channel;
their activations are quantized on the fly at each call (DynamicQuantizeLinear), so no calibration data is needed.
Attention's activation-by-activation matmuls, the decoder's Gemm layers, convolutions, LayerNorm and Softmax stay
fp32. ONNX Runtime runs the int8 matmuls with VNNI/AMX instructions where the CPU has them. The quantizer is ONNX
Runtime's own (`onnxruntime.quantization.quantize_dynamic`); int8 graphs are for ONNX Runtime's CPU provider, not
TensorRT (whose int8 needs calibration or explicit Q/DQ nodes).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import onnx


def quantize_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its constant-weight MatMuls dynamically quantized to int8 (per-channel weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="synseg-int8-") as tmp:
        output = Path(tmp) / "int8.onnx"
        quantize_dynamic(model, output, op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": True})
        return onnx.load(str(output))
