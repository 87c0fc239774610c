"""PyTorch eager backend (CPU or CUDA; fp16 autocast on CUDA, bf16 autocast on either)."""
from __future__ import annotations

import logging

import torch

from ..model import SynSeg
from .base import BackendError

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "fp16", "bf16")


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without them bf16 matmuls are emulated on the CPU and slower than fp32."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


class TorchBackend:
    name = "torch"
    input_size = None
    max_batch = None
    thread_safe = True  # inference-mode forwards share no mutable state beyond dict caches

    def __init__(self, model: SynSeg, device: str | torch.device = "cpu", precision: str = "fp32"):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError("device 'cuda' requested but torch.cuda.is_available() is False; use device 'cpu'")
        if precision not in PRECISIONS:
            raise BackendError(f"precision {precision!r} is not supported by the torch backend; use one of "
                               f"{list(PRECISIONS)}")
        if precision == "fp16" and self.device.type != "cuda":
            raise BackendError("fp16 needs a CUDA device; use precision 'fp32' or 'bf16' on CPU")
        if precision == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            log.warning("bf16 on a CPU without AVX512-BF16 or AMX is emulated and slower than fp32")
        self.precision = precision
        self.model = model.to(self.device).eval()

    @torch.inference_mode()
    def run(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        text = text.to(self.device)
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            probs = self.model(images, text)
        return probs.float()
