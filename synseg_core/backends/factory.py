"""Create an image-path backend by name; ONNX files are exported on first use and cached."""
from __future__ import annotations

import logging
from pathlib import Path

from ..model import SynSeg
from .base import BackendError, ImagePathBackend

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "tensorrt", "auto")
DEFAULT_CACHE_DIR = "~/.cache/synseg"


def export_for_backend(model: SynSeg, onnx_path: str | Path | None, cache_dir: str | Path, input_size: int,
                       fp16: bool) -> Path:
    """The ONNX file to run: `onnx_path` when given, else an export cached under cache_dir/onnx (made if missing)."""
    from ..export import default_export_path, export_onnx

    if onnx_path is not None:
        if not Path(onnx_path).is_file():
            raise BackendError(f"onnx_path {onnx_path} does not exist; export one with training/export.py or leave "
                               "onnx_path empty to export automatically")
        return Path(onnx_path)
    path = default_export_path(model, Path(cache_dir) / "onnx", input_size, fp16)
    if not path.is_file():
        log.info("exporting the image path to %s (first run for these weights and input size)", path)
        export_onnx(model, path, input_size, fp16=fp16)
    return path


def default_input_size(model: SynSeg) -> int:
    inference = model.cfg.inference
    return inference.window or inference.short_side


def create_backend(name: str, model: SynSeg, *, device: str = "cpu", precision: str = "fp32",
                   onnx_path: str | Path | None = None, cache_dir: str | Path = DEFAULT_CACHE_DIR,
                   input_size: int | None = None, max_batch: int | None = None, **options) -> ImagePathBackend:
    """Backend `name` for `model` on `device` ("cpu", "cuda", "cuda:N").

    Args:
        onnx_path: an exported image path (onnxruntime/tensorrt); None = export automatically into cache_dir.
        cache_dir: where automatic exports and TensorRT engines are cached.
        input_size: fixed input size of the ONNX/TensorRT image path (default: the model's inference window).
        max_batch: largest image batch per run (multi-camera batching).
        options: backend-specific settings (TensorRT: profile sizes, force_rebuild, workspace ...).
    """
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")
    if name == "torch":
        if options:
            raise BackendError(f"unknown option(s) {sorted(options)} for the torch backend")
        from .torch_backend import TorchBackend

        return TorchBackend(model, device=device, precision=precision)
    size = input_size or default_input_size(model)
    if name == "onnxruntime":
        if options:
            raise BackendError(f"unknown option(s) {sorted(options)} for the onnxruntime backend")
        from ..export import weights_digest
        from .onnx_backend import OnnxRuntimeBackend

        path = export_for_backend(model, onnx_path, cache_dir, size, fp16=precision == "fp16")
        return OnnxRuntimeBackend(path, device=device, max_batch=max_batch,
                                  expected_digest=weights_digest(model) if onnx_path is None else None)
    raise BackendError(f"backend {name!r} is not wired yet; use 'torch' or 'onnxruntime'")
