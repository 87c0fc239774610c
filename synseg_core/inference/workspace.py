"""Scratch tensors of the image path, kept from one call to the next (one set per calling thread).

Why: a frame's intermediates are tens of megabytes (K maps at the input resolution). On the CPU a fresh tensor that
size is backed by new pages, and after a model run has returned its memory to the system, the page faults of one
frame's intermediates cost about as much as the arithmetic on them. Reusing the buffers of the previous frame avoids
them; on a GPU the caching allocator does this already and the workspace only saves its calls. Results handed to
callers are never workspace tensors.
"""
from __future__ import annotations

import threading
from typing import Hashable, Sequence

import torch


class Workspace:
    """Tensors by key, reallocated only when the shape, dtype, device or memory format asked for changes."""

    def __init__(self) -> None:
        self._local = threading.local()  # concurrent calls (CPU lanes) each get their own buffers

    def tensor(self, key: Hashable, shape: Sequence[int], dtype: torch.dtype, device: torch.device,
               memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """An uninitialised tensor for `key`: the one from the previous call when it fits, else a new one."""
        buffers: dict = self._local.__dict__.setdefault("buffers", {})
        spec = (tuple(shape), dtype, torch.device(device), memory_format)
        kept = buffers.get(key)
        if kept is None or kept[0] != spec:
            kept = (spec, torch.empty(spec[0], dtype=dtype, device=device, memory_format=memory_format))
            buffers[key] = kept
        return kept[1]


def scratch(workspace: Workspace | None, key: Hashable, shape: Sequence[int], dtype: torch.dtype,
            device: torch.device, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """A workspace tensor, or a fresh one without a workspace."""
    if workspace is None:
        return torch.empty(tuple(shape), dtype=dtype, device=device, memory_format=memory_format)
    return workspace.tensor(key, shape, dtype, device, memory_format)
