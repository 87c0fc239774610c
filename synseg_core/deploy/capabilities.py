"""Which backend runs which precision on which device: the one table that the backend factory, the exporters, the
ROS node's parameter checks and every command line read.

Precisions: ``fp32``; ``fp16`` (GPU backends); ``bf16`` (PyTorch autocast, fast on CPUs with AVX512-BF16/AMX);
``int8`` (ONNX Runtime on the CPU: dynamically quantized tower matmuls). ``auto`` picks a backend in
``AUTO_ORDER`` and skips, with a logged reason, the ones that cannot run the requested precision.
"""
from __future__ import annotations

from typing import Literal

Backend = Literal["auto", "torch", "onnxruntime", "tensorrt"]
Precision = Literal["fp32", "fp16", "int8", "bf16"]

BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime", "tensorrt")
CONCRETE_BACKENDS: tuple[str, ...] = tuple(b for b in BACKENDS if b != "auto")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "bf16")
DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda")
# What each precision is, for error messages.
PRECISION_NOTES: dict[str, str] = {"fp32": "full precision", "fp16": "half precision on a GPU",
                                   "int8": "ONNX Runtime's CPU quantization", "bf16": "PyTorch autocast"}
# (backend, device type) -> the precisions it runs as asked.
SUPPORT: dict[tuple[str, str], tuple[str, ...]] = {
    ("torch", "cpu"): ("fp32", "bf16"),
    ("torch", "cuda"): ("fp32", "fp16", "bf16"),
    ("onnxruntime", "cpu"): ("fp32", "int8"),
    ("onnxruntime", "cuda"): ("fp32", "fp16"),
    ("tensorrt", "cuda"): ("fp32", "fp16"),
}
# (precision, device type) that runs as fp32 instead of failing: fp16 only pays off on a GPU.
RUNS_AS_FP32: tuple[tuple[str, str], ...] = (("fp16", "cpu"),)
# The backends that run exported ONNX files; the exporter writes the precisions they run (bf16 is autocast only).
ONNX_BACKENDS: tuple[str, ...] = ("onnxruntime", "tensorrt")
# What `auto` tries, best first, as (backend, device type).
AUTO_ORDER: tuple[tuple[str, str], ...] = (("tensorrt", "cuda"), ("onnxruntime", "cuda"), ("torch", "cuda"),
                                          ("onnxruntime", "cpu"), ("torch", "cpu"))


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without them bf16 matmuls are emulated on the CPU and slower than fp32."""
    import torch  # lazy: the table itself is read by parameter checks that need no torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def supported_precisions(backend: str, device_type: str) -> tuple[str, ...]:
    """Precisions `backend` runs on `device_type` ("cpu" or "cuda"); () where it does not run there at all."""
    return SUPPORT.get((backend, device_type), ())


def backend_precisions(backend: str) -> tuple[str, ...]:
    """Precisions `backend` runs on some device, in `PRECISIONS` order."""
    return tuple(p for p in PRECISIONS if any(p in supported_precisions(backend, d) for d in DEVICE_TYPES))


EXPORT_PRECISIONS: tuple[str, ...] = tuple(p for p in PRECISIONS if any(p in backend_precisions(b)
                                                                        for b in ONNX_BACKENDS))


def runners_of(precision: str) -> list[str]:
    """'torch on cpu', ... for every (backend, device) that runs `precision`, for error messages."""
    return [f"{b} on {d}" for (b, d), ps in SUPPORT.items() if precision in ps]


def describe_precisions() -> str:
    """One line per precision: where it runs (for help texts and parameter descriptions)."""
    return "; ".join(f"{p}: {', '.join(runners_of(p))}" for p in PRECISIONS)


def step_precision(backend: str, device_type: str, precision: str) -> str:
    """The precision `backend` runs on `device_type` when asked for `precision`: that one where the table has it,
    else fp32, which every backend runs (fp16 on a CPU; int8 on torch as the last step of `auto`)."""
    return precision if precision in supported_precisions(backend, device_type) else "fp32"


def unsupported_reason(backend: str, precision: str) -> str | None:
    """Why `backend` never runs `precision` (on any device), or None when it runs it somewhere."""
    if precision in backend_precisions(backend):
        return None
    return (f"precision {precision!r} is {PRECISION_NOTES[precision]}; backend {backend!r} runs "
            f"{', '.join(backend_precisions(backend))}")


def precision_problem(backend: str, device_type: str, precision: str) -> str | None:
    """Why asking `backend` ("auto" = any) for `precision` on `device_type` is an error, or None.

    A precision that no backend runs on `device_type` is an error unless it runs as fp32 there (`RUNS_AS_FP32`).
    """
    if precision not in PRECISIONS:
        return f"precision {precision!r} is not supported; use one of {list(PRECISIONS)}"
    runners = [b for b in CONCRETE_BACKENDS if precision in backend_precisions(b)]
    devices = [d for d in DEVICE_TYPES if any(precision in supported_precisions(b, d) for b in runners)]
    hint = f"use backend {' or '.join(map(repr, runners))} or 'auto'"
    if len(devices) < len(DEVICE_TYPES):
        hint += f" on device {' or '.join(map(repr, devices))}"
    reason = None if backend == "auto" else unsupported_reason(backend, precision)
    if reason is None and device_type not in devices and (precision, device_type) not in RUNS_AS_FP32:
        reason = f"precision {precision!r} is {PRECISION_NOTES[precision]}; no backend runs it on {device_type!r}"
    return None if reason is None else f"{reason}: {hint}"
