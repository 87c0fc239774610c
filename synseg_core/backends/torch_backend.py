"""PyTorch eager backend (CPU or CUDA; fp16 autocast on CUDA)."""
from __future__ import annotations

import torch

from ..model import SynSeg
from .base import BackendError


class TorchBackend:
    name = "torch"
    input_size = None
    max_batch = None

    def __init__(self, model: SynSeg, device: str | torch.device = "cpu", precision: str = "fp32"):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError("device 'cuda' requested but torch.cuda.is_available() is False; use device 'cpu'")
        if precision not in ("fp32", "fp16"):
            raise BackendError(f"precision {precision!r} is not supported; use 'fp32' or 'fp16'")
        if precision == "fp16" and self.device.type != "cuda":
            raise BackendError("fp16 needs a CUDA device; use precision 'fp32' on CPU")
        self.precision = precision
        self.model = model.to(self.device).eval()

    @torch.inference_mode()
    def run(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        text = text.to(self.device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.precision == "fp16"):
            probs = self.model(images, text)
        return probs.float()
