"""ONNX Runtime backend (CUDA execution provider when asked for and present, else CPU).

Inputs and outputs are bound to torch tensors' memory on the backend's device (ONNX Runtime's I/O binding), so
windows coming from pre-processing on the GPU and probabilities going to post-processing there never pass through
host memory.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..export import INPUT_IMAGES, INPUT_TEXT, OUTPUT, ExportError, read_export_info
from .base import BackendError

log = logging.getLogger(__name__)
_TORCH_TYPES = {"tensor(float)": torch.float32, "tensor(float16)": torch.float16}
_NUMPY_TYPES = {torch.float32: np.float32, torch.float16: np.float16}


def available_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


class OnnxRuntimeBackend:
    """Runs an exported image path (`synseg_core.deploy.export`) with ONNX Runtime."""

    name = "onnxruntime"
    thread_safe = True  # InferenceSession.run may be called concurrently

    def __init__(self, onnx_path: str | Path, device: str | torch.device = "cpu", max_batch: int | None = None,
                 expected_digest: str | None = None, threads: int = 0):
        import onnxruntime as ort

        try:
            info = read_export_info(onnx_path)
        except ExportError as exc:
            raise BackendError(str(exc)) from exc
        if expected_digest is not None and info.weights_sha256 != expected_digest:
            raise BackendError(f"{onnx_path} was exported from other weights than the loaded model "
                               f"(digest {info.weights_sha256[:12]} vs {expected_digest[:12]}); re-export it")
        self.info = info
        self.input_size = info.input_size
        self.precision = info.precision
        self.max_batch = max_batch
        self.device = torch.device(device)
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in available_providers():
                raise BackendError("device 'cuda' asked for, but this onnxruntime has no CUDAExecutionProvider "
                                   f"(available: {available_providers()}); install onnxruntime-gpu or use device 'cpu'")
            providers = [("CUDAExecutionProvider", {"device_id": self.device.index or 0}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise BackendError(f"ONNX Runtime cannot load {onnx_path}: {exc}") from exc
        log.info("onnxruntime session on %s (%s, %s, input %d)", self.session.get_providers()[0], onnx_path,
                 self.precision, self.input_size)
        types = {value.name: value.type for value in [*self.session.get_inputs(), *self.session.get_outputs()]}
        unknown = {name: kind for name, kind in types.items() if kind not in _TORCH_TYPES}
        if unknown:
            raise BackendError(f"{onnx_path} has inputs/outputs of types {unknown}; the image path binds "
                               f"{sorted(_TORCH_TYPES)}")
        self._dtypes = {name: _TORCH_TYPES[kind] for name, kind in types.items()}

    def run(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        s = self.input_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise BackendError(f"this ONNX model takes images [B, 3, {s}, {s}], got {tuple(images.shape)}")
        if text.ndim != 2 or text.shape[1] != self.info.embed_dim or text.shape[0] == 0:
            raise BackendError(f"text embeddings must be [K >= 1, {self.info.embed_dim}], got {tuple(text.shape)}")
        if self.max_batch is not None and images.shape[0] > self.max_batch:
            raise BackendError(f"batch of {images.shape[0]} images exceeds max_batch {self.max_batch}")
        inputs = {name: tensor.detach().to(self.device, self._dtypes[name]).contiguous()
                  for name, tensor in ((INPUT_IMAGES, images), (INPUT_TEXT, text))}
        probs = torch.empty(images.shape[0], text.shape[0], s, s, dtype=self._dtypes[OUTPUT], device=self.device)
        binding = self.session.io_binding()
        where = (self.device.type, self.device.index or 0)
        for name, tensor in inputs.items():
            binding.bind_input(name, *where, _NUMPY_TYPES[tensor.dtype], list(tensor.shape), tensor.data_ptr())
        binding.bind_output(OUTPUT, *where, _NUMPY_TYPES[probs.dtype], list(probs.shape), probs.data_ptr())
        if self.device.type == "cuda":
            # ONNX Runtime reads the inputs on its own stream; they were produced on torch's. Run returns after its
            # stream finished, so the outputs are ready for torch.
            torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(binding)
        return probs.float()
