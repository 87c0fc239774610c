"""The one interface every image-path backend implements (torch, onnxruntime, tensorrt)."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


class BackendError(RuntimeError):
    """A backend cannot be created or cannot run the given inputs; the message says why and what is accepted."""


@runtime_checkable
class ImagePathBackend(Protocol):
    """Runs CLIP image tower (up to the deepest extracted block) + decoder + upsampler + sigmoid.

    Attributes:
        name: "torch", "onnxruntime" or "tensorrt".
        precision: resolved precision actually used ("fp32" or "fp16").
        device: torch device the outputs live on.
        input_size: the fixed square input size S, or None when any multiple of the patch size works.
        max_batch: the largest image batch one `run` call accepts (None = unlimited).
        thread_safe: whether `run` may be called from several threads at once (`Segmenter` serialises the calls of
            backends that are not).
    """

    name: str
    precision: str
    device: torch.device
    input_size: int | None
    max_batch: int | None
    thread_safe: bool

    def run(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] float32 normalised, text [K, D] float32 -> probabilities [B, K, S, S] float32."""
        ...
