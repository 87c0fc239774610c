"""PyTorch backend (CPU or CUDA; fp16 autocast on CUDA, bf16 autocast on either; CUDA graphs on CUDA)."""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Callable

import torch

from ...model.synseg import SynSeg
from ..capabilities import backend_precisions, cpu_has_native_bf16, supported_precisions
from .base import BackendError

log = logging.getLogger(__name__)
PRECISIONS = backend_precisions("torch")
GRAPH_CHECK_ATOL = 1e-3  # a replay must match the eager forward it was captured from (same kernels: ~0 expected)

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class CapturedForward:
    """The forward for one (images, text) shape as a CUDA graph: a call copies its inputs into the captured buffers,
    replays, and returns a copy of the captured output.

    Why: eager ViT-B/16 on a fast GPU is bound by Python launching a few hundred small kernels (fp16 does not
    help: autocast adds cast kernels); a replay is one launch.
    """

    def __init__(self, forward: Forward, images: torch.Tensor, text: torch.Tensor, warmup: int = 2):
        self.images, self.text = images.clone(), text.clone()
        device = images.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # capture needs lazily created state (cuBLAS handles, workspaces) to exist
            for _ in range(warmup):
                forward(self.images, self.text)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: the node encodes a new query's text on the GPU from another thread meanwhile
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.output = forward(self.images, self.text)

    def __call__(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        self.images.copy_(images)
        self.text.copy_(text)
        self.graph.replay()
        return self.output.clone()


class TorchBackend:
    """The model in PyTorch.

    Args:
        cuda_graphs: on CUDA, replay a CUDA graph per input shape (the last `max_graphs` shapes are kept; a new
            category count or batch size captures once). Each capture is checked against the eager forward; a capture
            that fails or disagrees is logged and the backend runs eagerly from then on. Ignored on the CPU.
    """

    name = "torch"
    input_size = None
    max_batch = None

    def __init__(self, model: SynSeg, device: str | torch.device = "cpu", precision: str = "fp32",
                 cuda_graphs: bool = True, max_graphs: int = 4):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError("device 'cuda' requested but torch.cuda.is_available() is False; use device 'cpu'")
        if precision not in PRECISIONS:
            raise BackendError(f"precision {precision!r} is not supported by the torch backend; use one of "
                               f"{list(PRECISIONS)}")
        if precision == "fp16" and self.device.type != "cuda":
            raise BackendError(f"fp16 needs a CUDA device; use precision "
                               f"{' or '.join(map(repr, supported_precisions('torch', 'cpu')))} on CPU")
        if precision == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            log.warning("bf16 on a CPU without AVX512-BF16 or AMX is emulated and slower than fp32")
        if max_graphs < 1:
            raise BackendError(f"max_graphs must be >= 1, got {max_graphs}")
        self.precision = precision
        self.model = model.to(self.device).eval()
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        # Inference-mode eager forwards share no mutable state beyond dict caches; graph replays share their buffers.
        self.thread_safe = not self.cuda_graphs
        self.max_graphs = max_graphs
        self._graphs: OrderedDict[tuple, CapturedForward] = OrderedDict()
        self._dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)

    @torch.inference_mode()
    def run(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        text = text.to(self.device)
        forward = self._graph_for(images, text) if self.cuda_graphs else self._forward
        return forward(images, text)

    def _forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        # autocast's weight-cast cache would hold tensors made during a capture; graphs recast inside the graph
        with torch.autocast(self.device.type, dtype=self._dtype, enabled=self._dtype is not None,
                            cache_enabled=not self.cuda_graphs):
            return self.model(images, text).float()

    def _graph_for(self, images: torch.Tensor, text: torch.Tensor) -> Forward:
        key = (tuple(images.shape), tuple(text.shape))
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return self._graphs[key]
        try:
            captured = CapturedForward(self._forward, images, text)
            difference = (captured(images, text) - self._forward(images, text)).abs().max().item()
            if difference > GRAPH_CHECK_ATOL:
                raise BackendError(f"replay differs from the eager forward by {difference:.2e} (allowed "
                                   f"{GRAPH_CHECK_ATOL:g})")
        except Exception as e:  # noqa: BLE001 - any capture failure leaves the eager path, which works
            log.warning("CUDA graph for images %s, text %s not used (%s: %s); running eagerly from now on",
                        list(images.shape), list(text.shape), type(e).__name__, e)
            self.cuda_graphs = False
            self._graphs.clear()
            return self._forward
        log.info("captured a CUDA graph for images %s, text %s", list(images.shape), list(text.shape))
        self._graphs[key] = captured
        if len(self._graphs) > self.max_graphs:
            self._graphs.popitem(last=False)
        return captured
