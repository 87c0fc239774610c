"""Create an image-path backend by name."""
from __future__ import annotations

from ..model import SynSeg
from .base import BackendError, ImagePathBackend

BACKENDS = ("torch", "onnxruntime", "tensorrt", "auto")


def create_backend(name: str, model: SynSeg, *, device: str = "cpu", precision: str = "fp32",
                   **options) -> ImagePathBackend:
    """Backend `name` for `model` on `device` ("cpu", "cuda", "cuda:N")."""
    if name == "torch":
        if options:
            raise BackendError(f"the torch backend takes no options, got {sorted(options)}")
        from .torch_backend import TorchBackend

        return TorchBackend(model, device=device, precision=precision)
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")
    raise BackendError(f"backend {name!r} is not available yet in this build; use 'torch'")
