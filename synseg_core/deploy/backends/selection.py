"""Choose the image-path backend: `auto` tries TensorRT, ONNX Runtime CUDA, PyTorch CUDA, ONNX Runtime CPU,
PyTorch CPU, and logs why each skipped step was skipped.

PyTorch on a GPU comes before ONNX Runtime on the CPU: the PyPI `onnxruntime` wheel has no CUDA provider, and a
GPU PyTorch is far faster than any CPU runtime. On a CPU-only machine ONNX Runtime comes before PyTorch (it runs
ViT-B/16 faster, and int8 only there). The concrete backends come from factories, so this module imports none of them.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

from ..capabilities import AUTO_ORDER, BACKENDS
from .base import BackendError, ImagePathBackend

log = logging.getLogger(__name__)

ORT_CUDA_PROVIDER = "CUDAExecutionProvider"

BackendFactory = Callable[[str], ImagePathBackend]  # device string ("cuda:0", "cpu") -> backend


@dataclass(frozen=True)
class RuntimeEnvironment:
    """What this machine offers; `None` problems mean "usable"."""

    cuda_available: bool
    tensorrt_problem: str | None
    onnxruntime_problem: str | None
    onnxruntime_providers: tuple[str, ...] = ()

    @classmethod
    def probe(cls) -> "RuntimeEnvironment":
        """Look at torch.cuda, and try importing tensorrt and onnxruntime."""
        tensorrt_problem = _import_problem("tensorrt")
        onnxruntime_problem = _import_problem("onnxruntime")
        providers: tuple[str, ...] = ()
        if onnxruntime_problem is None:
            providers = tuple(importlib.import_module("onnxruntime").get_available_providers())
        return cls(torch.cuda.is_available(), tensorrt_problem, onnxruntime_problem, providers)


def _import_problem(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except (ImportError, OSError) as exc:
        return f"{module} cannot be imported ({type(exc).__name__}: {exc})"
    return None


@dataclass(frozen=True)
class BackendFactories:
    """Factories for the concrete backends; None = that backend is not offered (e.g. no ONNX file exported), for the
    reason in `not_offered` when one is given there."""

    torch: BackendFactory | None = None
    onnxruntime: BackendFactory | None = None
    tensorrt: BackendFactory | None = None
    not_offered: Mapping[str, str] = field(default_factory=dict)  # backend name -> why its factory is None


@dataclass
class Selection:
    """The chosen backend and, in order, every (step, reason) skipped before it."""

    backend: ImagePathBackend
    skipped: list[tuple[str, str]] = field(default_factory=list)


def select_backend(choice: str, factories: BackendFactories, *, device: str | torch.device = "cuda",
                   environment: RuntimeEnvironment | None = None) -> Selection:
    """Create the backend for `choice`, trying the steps of `AUTO_ORDER` that belong to it (explicit choices keep
    that order within their backend).

    Args:
        choice: "auto", "tensorrt", "onnxruntime" or "torch".
        factories: how to make each concrete backend for a device string.
        device: the preferred device; "cpu" skips every CUDA step.
        environment: what the machine offers (probed when None).

    Raises:
        BackendError: no step worked; the message lists each step's reason.
    """
    if choice not in BACKENDS:
        raise BackendError(f"backend {choice!r} is not one of {list(BACKENDS)}")
    environment = environment or RuntimeEnvironment.probe()
    device = torch.device(device)
    skipped: list[tuple[str, str]] = []
    for backend, kind in AUTO_ORDER:
        if choice not in ("auto", backend):
            continue
        step = f"{backend} ({kind})"
        target = str(device) if device.type == "cuda" and kind == "cuda" else kind
        reason = _skip_reason(backend, kind, device, environment, getattr(factories, backend),
                              factories.not_offered.get(backend))
        if reason is None:
            try:
                chosen = getattr(factories, backend)(target)
            except Exception as exc:  # any failure of one step is a reason to try the next
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("backend %s failed: %s", step, reason)
            else:
                log.info("image-path backend: %s on %s, %s%s", backend, target, chosen.precision,
                         "".join(f"; skipped {s}: {r}" for s, r in skipped))
                return Selection(chosen, skipped)
        else:
            log.info("backend %s skipped: %s", step, reason)
        skipped.append((step, reason))
    raise BackendError(f"no usable backend for {choice!r} on {device}: "
                       + "; ".join(f"{step}: {reason}" for step, reason in skipped))


def _skip_reason(backend: str, kind: str, device: torch.device, environment: RuntimeEnvironment,
                 factory: BackendFactory | None, not_offered: str | None = None) -> str | None:
    """Why a step cannot even be tried (every reason, joined), or None."""
    if factory is None:
        return not_offered or f"no {backend} backend was configured (no model file for it)"
    reasons = []
    if backend == "tensorrt" and environment.tensorrt_problem is not None:
        reasons.append(environment.tensorrt_problem)
    if backend == "onnxruntime" and environment.onnxruntime_problem is not None:
        reasons.append(environment.onnxruntime_problem)
    if kind == "cuda":
        if device.type != "cuda":
            reasons.append(f"device {str(device)!r} was requested")
        elif not environment.cuda_available:
            reasons.append("no CUDA device (torch.cuda.is_available() is False)")
        if (backend == "onnxruntime" and environment.onnxruntime_problem is None
                and ORT_CUDA_PROVIDER not in environment.onnxruntime_providers):
            reasons.append(f"onnxruntime has no {ORT_CUDA_PROVIDER} (available: "
                           f"{', '.join(environment.onnxruntime_providers)}; install onnxruntime-gpu)")
    return "; ".join(reasons) or None
