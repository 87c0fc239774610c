"""Which backend runs which precision on which device: the one table that the backend factory, the exporters, the
ROS node's parameter checks and every command line read.

Precisions: ``fp32``; ``fp16`` (GPU backends); ``bf16`` (PyTorch autocast, fast on CPUs with AVX512-BF16/AMX);
``int8`` (ONNX Runtime on the CPU: dynamically quantized tower matmuls). ``auto`` picks a backend in
``AUTO_ORDER`` and skips, with a logged reason, the ones that cannot run the requested precision.
"""
from __future__ import annotations

from typing import Literal

Backend = Literal["auto", "torch", "onnxruntime", "tensorrt"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]

BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda")
# ONNX files the exporter writes (bf16 exists only as PyTorch autocast).
EXPORT_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
# (backend, device type) -> the precisions it runs as asked.
SUPPORT: dict[tuple[str, str], tuple[str, ...]] = {
    ("torch", "cpu"): ("fp32", "bf16"),
    ("torch", "cuda"): ("fp32", "fp16", "bf16"),
    ("onnxruntime", "cpu"): ("fp32", "int8"),
    ("onnxruntime", "cuda"): ("fp32", "fp16"),
    ("tensorrt", "cuda"): ("fp32", "fp16"),
}
# What `auto` tries, best first, as (backend, device type).
AUTO_ORDER: tuple[tuple[str, str], ...] = (("tensorrt", "cuda"), ("onnxruntime", "cuda"), ("torch", "cuda"),
                                          ("onnxruntime", "cpu"), ("torch", "cpu"))


def supported_precisions(backend: str, device_type: str) -> tuple[str, ...]:
    """Precisions `backend` runs on `device_type` ("cpu" or "cuda"); () where it does not run there at all."""
    return SUPPORT.get((backend, device_type), ())


def runners_of(precision: str) -> list[str]:
    """'torch on cpu', ... for every (backend, device) that runs `precision`, for error messages."""
    return [f"{b} on {d}" for (b, d), ps in SUPPORT.items() if precision in ps]


def describe_precisions() -> str:
    """One line per precision: where it runs (for help texts and parameter descriptions)."""
    return "; ".join(f"{p}: {', '.join(runners_of(p))}" for p in PRECISIONS)
