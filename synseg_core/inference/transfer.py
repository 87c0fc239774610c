"""Moving frames to the backend's device and results back, once per batch.

On a GPU a batch's uint8 frames are staged in one page-locked (pinned) host buffer and go up in one asynchronous
copy; the requested results of the whole batch come back in one pass of asynchronous copies into one pinned buffer
and a single wait. On the CPU nothing moves: frames are used in place and results are handed out as numpy views of
the tensors that hold them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

ALIGN = 64  # byte alignment of each tensor inside a staging buffer (a cache line; enough for every dtype)


def _aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN


def frames_to_device(images: Sequence[np.ndarray], device: torch.device) -> list[tuple[list[int], torch.Tensor]]:
    """Frames grouped by size on `device`.

    Args:
        images: HxWx3 uint8 arrays (validated), writable or read-only, any strides.
    Returns:
        (indices into `images`, frames [N, H, W, 3] uint8) per group. On CUDA, frames of one size form one group,
        all groups are views of one buffer that went up in one copy. On the CPU each frame is its own group and a
        writable frame without negative strides is used without a copy.
    """
    if device.type != "cuda":
        return [([i], torch.from_numpy(_host_frame(im))[None]) for i, im in enumerate(images)]
    order: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        order.setdefault(im.shape[:2], []).append(i)
    offsets, total = [], 0
    for (height, width), members in order.items():
        offsets.append(total)
        total += _aligned(len(members) * height * width * 3)
    staging = torch.empty(total, dtype=torch.uint8, pin_memory=True)
    host = staging.numpy()
    for offset, ((height, width), members) in zip(offsets, order.items()):
        block = host[offset:offset + len(members) * height * width * 3].reshape(len(members), height, width, 3)
        for row, i in enumerate(members):
            np.copyto(block[row], images[i])  # reads read-only and strided frames as they are
    # The caching host allocator keeps `staging` from reuse until this copy has finished.
    uploaded = staging.to(device, non_blocking=True)
    return [(members, uploaded[offset:offset + len(members) * h * w * 3].view(len(members), h, w, 3))
            for offset, ((h, w), members) in zip(offsets, order.items())]


def _host_frame(image: np.ndarray) -> np.ndarray:
    """The frame itself when torch can wrap it (writable, no negative strides: row padding and planar layouts are
    fine, the pre-processing reads any strides), else a C-contiguous writable copy.

    torch.from_numpy warns about read-only arrays (e.g. np.asarray of a PIL image) because a tensor could write to
    them; the image path never writes to its input, but copying a read-only frame keeps that guarantee explicit.
    """
    if image.flags.writeable and min(image.strides) >= 0:
        return image
    return np.array(image, order="C", copy=True)


def _dense_order(tensor: torch.Tensor) -> list[int] | None:
    """Dimensions from outermost to innermost in memory when `tensor` is a permutation of a contiguous tensor."""
    order = sorted(range(tensor.ndim), key=lambda d: (-tensor.stride(d), d))
    return order if tensor.permute(order).is_contiguous() else None


def to_host(tensors: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Host numpy arrays of the tensors, with their shapes and dtypes; memory layouts (e.g. channels-last) are kept.

    CPU tensors are returned as views (no copy). CUDA tensors go into one pinned buffer with asynchronous copies
    and the caller waits once, for all of them.
    """
    if all(t.device.type != "cuda" for t in tensors):
        return [t.numpy() for t in tensors]
    dense = []
    for t in tensors:
        order = _dense_order(t)
        if order is None:
            t, order = t.contiguous(), list(range(t.ndim))
        dense.append((t.permute(order), order))
    sizes = [_aligned(t.numel() * t.element_size()) for t, _ in dense]
    staging = torch.empty(sum(sizes), dtype=torch.uint8, pin_memory=True)
    arrays, offset = [], 0
    for (t, order), size in zip(dense, sizes):
        target = staging[offset:offset + t.numel() * t.element_size()].view(t.dtype).view(t.shape)
        target.copy_(t, non_blocking=True)
        inverse = [order.index(d) for d in range(len(order))]
        arrays.append(target.numpy().transpose(inverse))
        offset += size
    torch.cuda.current_stream(tensors[0].device).synchronize()
    return arrays
