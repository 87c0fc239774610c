"""Create an image-path backend by name ("torch", "onnxruntime", "tensorrt" or "auto").

ONNX files are exported on first use and cached by weights digest, input size and precision; TensorRT engines are
built from them on the target and cached by helper modules in `backends/tensorrt`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from ..export import PRECISIONS as EXPORT_PRECISIONS
from ...model.synseg import SynSeg
from .base import BackendError, ImagePathBackend

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "tensorrt", "auto")
PRECISIONS = (*EXPORT_PRECISIONS, "bf16")  # bf16: PyTorch autocast only
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

        # as the fallback of `auto`: fp16 needs a GPU and int8 is ONNX Runtime's, so those fall back to fp32
        on_gpu = torch.device(device).type == "cuda"
        keep = self.precision == "bf16" or (self.precision == "fp16" and on_gpu)
        return TorchBackend(self.model, device=device, precision=self.precision if keep else "fp32",
                            cuda_graphs=self.cuda_graphs if cuda_graphs is None else cuda_graphs)

    def _onnxruntime_precision(self, device: str) -> str:
        """fp16 graphs only pay off on a GPU (on the CPU ONNX Runtime runs the fp32 export); int8 is CPU-only."""
        return "fp32" if self.precision == "fp16" and torch.device(device).type != "cuda" else self.precision

    def onnxruntime(self, device: str) -> ImagePathBackend:
        from ..export import weights_digest
        from .onnx_backend import OnnxRuntimeBackend

        precision = self._onnxruntime_precision(device)
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
        precision: "fp32", "fp16" (GPU backends; `auto` runs fp32 on the CPU), "int8" (ONNX Runtime on the CPU
            only: dynamically quantized tower matmuls, export_int8.py; `auto` falls back to fp32 torch) or "bf16"
            (PyTorch autocast, CPU or CUDA; `auto` picks torch; fast on CPUs with AVX512-BF16/AMX).
        onnx_path: an exported fp32 image path; None = export automatically into cache_dir/onnx.
        cache_dir: where automatic exports and TensorRT engines are cached.
        input_size: fixed input size of the ONNX/TensorRT image path (default: the model's inference window).
        max_batch: largest image batch per run (multi-camera batching, sliding windows).
        tensorrt: TensorRTConfig fields (profile sizes, force_rebuild, workspace, ...).
        cuda_graphs: the torch backend on CUDA replays a CUDA graph per input shape (see `TorchBackend`).
    """
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")
    if precision not in PRECISIONS:
        raise BackendError(f"precision {precision!r} is not supported; use one of {list(PRECISIONS)}")
    if precision == "int8" and (name in ("torch", "tensorrt") or torch.device(device).type != "cpu"):
        raise BackendError(f"precision 'int8' is ONNX Runtime's CPU quantization (asked for backend {name!r} on "
                           f"{device!r}): use backend 'onnxruntime' or 'auto' on device 'cpu'")
    if precision == "bf16" and name in ("onnxruntime", "tensorrt"):
        raise BackendError(f"precision 'bf16' is PyTorch autocast; backend {name!r} runs fp32, fp16 or int8: use "
                           "backend 'torch' or 'auto'")
    if name == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(model, device=device, precision=precision, cuda_graphs=cuda_graphs)
    makers = _Factories(model, precision, onnx_path, cache_dir, input_size or default_input_size(model), max_batch,
                        tensorrt, cuda_graphs)
    if name == "onnxruntime":
        return makers.onnxruntime(device)
    from .selection import BackendFactories, select_backend

    if precision == "bf16":  # PyTorch autocast: `auto` tries only torch, and says why it skips the others
        why = "precision 'bf16' is PyTorch autocast; this backend runs fp32, fp16 or int8"
        factories = BackendFactories(torch=makers.torch, not_offered={"tensorrt": why, "onnxruntime": why})
    else:
        factories = BackendFactories(torch=makers.torch, onnxruntime=makers.onnxruntime,
                                     tensorrt=makers.tensorrt_backend)
    return select_backend(name, factories, device=device).backend
