"""Mixed precision: which autocast dtype a run uses, and the gradient scaler that fp16 needs."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager, Literal

import torch

from ..config import ConfigError
from ..deploy.capabilities import cpu_has_native_bf16

Resolved = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(requested: str, device: torch.device, setting: str = "runtime.precision") -> Resolved:
    """Turn "auto" into a concrete precision for `device`; fp16 on a CPU is an error (naming `setting`)."""
    if requested == "auto":
        if device.type == "cuda":
            return "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if requested == "fp16" and device.type != "cuda":
        raise ConfigError(f"{setting}=fp16 needs a CUDA device (got {device}); use bf16 or fp32 on a CPU")
    if requested not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"{setting}: {requested!r} is not one of ['auto', 'fp32', 'bf16', 'fp16']")
    return requested  # type: ignore[return-value]


@dataclass
class MixedPrecision:
    """Autocast context and gradient scaler for one resolved precision on one device."""

    precision: Resolved
    device: torch.device

    def __post_init__(self) -> None:
        # Only fp16 can underflow gradients; the scaler is a no-op (and has empty state) otherwise.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES.get(self.precision, torch.float32)

    def autocast(self) -> ContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])
