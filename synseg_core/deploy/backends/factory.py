"""Create an image-path backend by name ("torch", "onnxruntime", "tensorrt" or "auto").

ONNX files are exported on first use and cached by weights digest, input size and precision; TensorRT engines are
built from them on the target and cached by helper modules in `backends/tensorrt`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from ..capabilities import (BACKENDS, CONCRETE_BACKENDS, PRECISIONS, precision_problem, step_precision,
                            unsupported_reason)
from ...model.synseg import SynSeg
from .base import BackendError, ImagePathBackend

log = logging.getLogger(__name__)
__all__ = ["BACKENDS", "DEFAULT_CACHE_DIR", "PRECISIONS", "create_backend", "default_input_size",
           "export_for_backend"]

DEFAULT_CACHE_DIR = "~/.cache/synseg"


def export_for_backend(model: SynSeg, onnx_path: str | Path | None, cache_dir: str | Path, input_size: int,
                       precision: str) -> Path:
    """The ONNX file to run: `onnx_path` when given, else an export cached under cache_dir/onnx (made if missing)."""
    from ..export import default_export_path, export_onnx

    if onnx_path is not None:
        if not Path(onnx_path).is_file():
            raise BackendError(f"onnx_path {onnx_path} does not exist; export one with training/export.py or leave "
                               "onnx_path empty to export automatically")
        return Path(onnx_path)
    path = default_export_path(model, Path(cache_dir) / "onnx", input_size, precision)
    if not path.is_file():
        log.info("exporting the image path to %s (first run for these weights, input size and precision)", path)
        export_onnx(model, path, input_size, precision=precision)
    return path


def default_input_size(model: SynSeg) -> int:
    inference = model.cfg.inference
    return inference.window or inference.short_side


class _Factories:
    """Makers of each concrete backend for a device string; exports happen only when a maker is called."""

    def __init__(self, model: SynSeg, precision: str, onnx_path: str | Path | None, cache_dir: str | Path,
                 input_size: int, max_batch: int | None, tensorrt: Mapping[str, Any] | None, cuda_graphs: bool):
        self.model, self.precision, self.onnx_path, self.cuda_graphs = model, precision, onnx_path, cuda_graphs
        self.cache_dir, self.input_size, self.max_batch = Path(cache_dir).expanduser(), input_size, max_batch
        self.tensorrt = dict(tensorrt or {})

    def _onnx(self, precision: str) -> Path:
        """An export of `precision`; a given onnx_path stands for the fp32 one (TensorRT's fp16 needs its own)."""
        return export_for_backend(self.model, self.onnx_path if precision == "fp32" else None, self.cache_dir,
                                  self.input_size, precision)

    def torch(self, device: str, cuda_graphs: bool | None = None) -> ImagePathBackend:
        """cuda_graphs: None = the factory's setting."""
        from .torch_backend import TorchBackend

        # as a step of `auto`: what torch does not run on this device (fp16 on a CPU, int8) runs as fp32
        precision = step_precision("torch", torch.device(device).type, self.precision)
        return TorchBackend(self.model, device=device, precision=precision,
                            cuda_graphs=self.cuda_graphs if cuda_graphs is None else cuda_graphs)

    def onnxruntime(self, device: str) -> ImagePathBackend:
        from ..export import weights_digest
        from .onnx_backend import OnnxRuntimeBackend

        precision = step_precision("onnxruntime", torch.device(device).type, self.precision)
        digest = weights_digest(self.model) if self.onnx_path is None or precision != "fp32" else None
        return OnnxRuntimeBackend(self._onnx(precision), device=device, max_batch=self.max_batch,
                                  expected_digest=digest)

    def tensorrt_backend(self, device: str) -> ImagePathBackend:
        from .tensorrt import TensorRTConfig, create_tensorrt_backend

        settings = {"cache_dir": str(self.cache_dir / "tensorrt"), "precision": self.precision, **self.tensorrt}
        if self.max_batch is not None:
            settings.setdefault("max_batch", self.max_batch)
        config = TensorRTConfig.from_dict(settings)
        fp16_onnx = self._onnx("fp16") if config.precision == "fp16" else None
        # the reference a fresh engine is checked against: eager (a graph per check point would cost 4 forwards each)
        return create_tensorrt_backend(self._onnx("fp32"), lambda: self.torch(device, cuda_graphs=False), config,
                                       fp16_onnx_path=fp16_onnx, device=device)


def create_backend(name: str, model: SynSeg, *, device: str = "cpu", precision: str = "fp32",
                   onnx_path: str | Path | None = None, cache_dir: str | Path = DEFAULT_CACHE_DIR,
                   input_size: int | None = None, max_batch: int | None = None,
                   tensorrt: Mapping[str, Any] | None = None, cuda_graphs: bool = True) -> ImagePathBackend:
    """Backend `name` for `model` on `device` ("cpu", "cuda", "cuda:N").

    Args:
        precision: one of `PRECISIONS`; which backend runs which on which device is the table in
            `deploy/capabilities.py` (fp16 asked on a CPU runs fp32; `auto` skips backends that never run it).
        onnx_path: an exported fp32 image path; None = export automatically into cache_dir/onnx.
        cache_dir: where automatic exports and TensorRT engines are cached.
        input_size: fixed input size of the ONNX/TensorRT image path (default: the model's inference window).
        max_batch: largest image batch per run (multi-camera batching, sliding windows).
        tensorrt: TensorRTConfig fields (profile sizes, force_rebuild, workspace, ...).
        cuda_graphs: the torch backend on CUDA replays a CUDA graph per input shape (see `TorchBackend`).
    """
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")
    problem = precision_problem(name, torch.device(device).type, precision)
    if problem is not None:
        raise BackendError(f"{problem} (asked for backend {name!r} on {device!r})")
    if name == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(model, device=device, precision=precision, cuda_graphs=cuda_graphs)
    makers = _Factories(model, precision, onnx_path, cache_dir, input_size or default_input_size(model), max_batch,
                        tensorrt, cuda_graphs)
    if name == "onnxruntime":
        return makers.onnxruntime(device)
    from .selection import BackendFactories, select_backend

    # `auto` tries only the backends that run the precision, and says why it skips the others
    makes = {"torch": makers.torch, "onnxruntime": makers.onnxruntime, "tensorrt": makers.tensorrt_backend}
    not_offered = {b: why for b in CONCRETE_BACKENDS if (why := unsupported_reason(b, precision)) is not None}
    factories = BackendFactories(**{b: make for b, make in makes.items() if b not in not_offered},
                                 not_offered=not_offered)
    return select_backend(name, factories, device=device).backend
