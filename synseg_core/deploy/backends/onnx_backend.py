"""ONNX Runtime backend (CUDA execution provider when asked for and present, else CPU)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..export import INPUT_IMAGES, INPUT_TEXT, ExportError, read_export_info
from .base import BackendError

log = logging.getLogger(__name__)


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

    def run(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        s = self.input_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise BackendError(f"this ONNX model takes images [B, 3, {s}, {s}], got {tuple(images.shape)}")
        if text.ndim != 2 or text.shape[1] != self.info.embed_dim or text.shape[0] == 0:
            raise BackendError(f"text embeddings must be [K >= 1, {self.info.embed_dim}], got {tuple(text.shape)}")
        if self.max_batch is not None and images.shape[0] > self.max_batch:
            raise BackendError(f"batch of {images.shape[0]} images exceeds max_batch {self.max_batch}")
        feeds = {INPUT_IMAGES: images.detach().float().cpu().numpy(),
                 INPUT_TEXT: text.detach().float().cpu().numpy()}
        (probs,) = self.session.run(None, feeds)
        return torch.from_numpy(np.ascontiguousarray(probs)).to(self.device)
