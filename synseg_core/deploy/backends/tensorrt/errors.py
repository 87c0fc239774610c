"""Errors of the TensorRT backend. All are BackendError, so a caller can fall back on any of them."""
from __future__ import annotations

from ..base import BackendError


class TensorRTError(BackendError):
    """Something about TensorRT failed; the message says what, and carries TensorRT's own log lines."""


class TensorRTUnavailableError(TensorRTError):
    """TensorRT cannot be used here at all (not importable, unsupported version, no CUDA device)."""


class OnnxParseError(TensorRTError):
    """TensorRT's ONNX parser rejected the model; `errors` lists every parser error node by node."""

    def __init__(self, message: str, errors: list[str]):
        super().__init__(message)
        self.errors = errors


class EngineBuildError(TensorRTError):
    """The builder returned no engine (or the build could not be configured)."""


class EngineLoadError(TensorRTError):
    """A serialized engine could not be deserialized or given an execution context."""


class EngineVerificationError(TensorRTError):
    """A fresh engine's outputs disagree with the reference backend; `report` has the measurements."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


class CachedFailureError(TensorRTError):
    """This exact engine (same cache key) failed before; it is not retried until an ingredient changes."""


class ShapeOutOfProfileError(TensorRTError):
    """An input shape lies outside the engine's optimisation profile."""
