"""Runtime backends for the image path. Heavy optional ones (onnxruntime, tensorrt) import lazily."""
from .base import BackendError, ImagePathBackend

__all__ = ["BackendError", "ImagePathBackend"]
