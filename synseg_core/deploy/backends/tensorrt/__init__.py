"""TensorRT backend: engines built on the target from the exported ONNX, cached, verified, run on torch tensors.

`tensorrt` itself is imported only when an engine is built or loaded, so this package imports everywhere.
"""
from .backend import TensorRTBackend, create_tensorrt_backend, tensorrt_backend_factory
from .config import TensorRTConfig
from .errors import (CachedFailureError, EngineBuildError, EngineLoadError, EngineVerificationError, OnnxParseError,
                     ShapeOutOfProfileError, TensorRTError, TensorRTUnavailableError)
from .onnx_info import supported_tensorrt_ops, unsupported_tensorrt_ops
from .precision import PrecisionPlan, resolve_precision
from .probe import DeviceInfo, import_tensorrt

__all__ = [
    "CachedFailureError", "DeviceInfo", "EngineBuildError", "EngineLoadError", "EngineVerificationError",
    "OnnxParseError", "PrecisionPlan", "ShapeOutOfProfileError", "TensorRTBackend", "TensorRTConfig",
    "TensorRTError", "TensorRTUnavailableError", "create_tensorrt_backend", "import_tensorrt", "resolve_precision",
    "supported_tensorrt_ops", "tensorrt_backend_factory", "unsupported_tensorrt_ops",
]
