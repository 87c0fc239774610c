"""Image validation, window geometry and the pre-processing that runs on the backend's device: uint8 frames ->
resized, normalised windows; the windows' probabilities -> one map per image (sliding-window inference, TCL protocol).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..config import InferenceConfig, PreprocessConfig
from .workspace import Workspace, scratch

MAX_IMAGE_PIXELS = 8192 * 8192


class ImageError(ValueError):
    """An input image has the wrong type, dtype, shape or size; the message says what is accepted."""


def validate_image(image: object, index: int | None = None) -> np.ndarray:
    """Check an HxWx3 uint8 RGB array and return it."""
    where = "image" if index is None else f"image[{index}]"
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{where} must be a numpy array (HxWx3 uint8 RGB), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(f"{where} must have dtype uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"{where} must be HxWx3 (RGB), got shape {image.shape}")
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ImageError(f"{where} has zero size {h}x{w}")
    if h * w > MAX_IMAGE_PIXELS:
        raise ImageError(f"{where} is {h}x{w}, larger than the {MAX_IMAGE_PIXELS} pixels accepted")
    return image


def normalise(pixels: torch.Tensor, pre: PreprocessConfig, out: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel values [N, 3, H, W] (uint8, or float 0..255) -> float32 (x / 255 - mean) / std with the model's
    statistics, into `out` when given. Op for op the arithmetic of the path this replaced (the division reads the
    uint8 values as float32 exactly), so its windows come out bit for bit the same."""
    mean, std = _statistics(tuple(pre.mean), tuple(pre.std), pixels.device)
    if out is None:
        out = torch.empty(pixels.shape, dtype=torch.float32, device=pixels.device)
    return torch.div(pixels, 255, out=out).sub_(mean).div_(std)


@functools.lru_cache(maxsize=8)
def _statistics(mean: tuple[float, ...], std: tuple[float, ...],
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: a copy from pageable host memory to a GPU waits for the GPU's queued work.
    return torch.tensor(mean).view(3, 1, 1).to(device), torch.tensor(std).view(3, 1, 1).to(device)


def model_input_size(height: int, width: int, cfg: InferenceConfig, multiple: int) -> tuple[int, int]:
    """Size the image is resized to: short side = cfg.short_side with the long side capped at cfg.long_side_cap (aspect
    kept, rounded to the patch multiple, at least one window) when sliding, or a short_side square when `window` is
    None."""
    if cfg.window is None:
        return cfg.short_side, cfg.short_side
    scale = min(cfg.short_side / min(height, width), cfg.long_side_cap / max(height, width))

    def rnd(x: float) -> int:
        return max(multiple, int(round(x * scale / multiple)) * multiple)

    return max(rnd(height), cfg.window), max(rnd(width), cfg.window)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """mmseg 'slide' window starts along one axis: the last window is shifted back to end at the border."""
    n = max(length - window + stride - 1, 0) // stride + 1
    return sorted({max(min(i * stride + window, length) - window, 0) for i in range(n)})


def window_boxes(height: int, width: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the sliding windows covering a height x width image."""
    return [(y, x) for y in window_starts(height, window, stride) for x in window_starts(width, window, stride)]


@dataclass(frozen=True)
class WindowLayout:
    """Where the model's windows lie in an image resized to `size` (h, w): top-left corners and window (height,
    width). `window` None in `plan` = the whole resized image is the one window."""

    size: tuple[int, int]
    boxes: tuple[tuple[int, int], ...]
    window: tuple[int, int]

    @classmethod
    def plan(cls, size: tuple[int, int], window: int | None, stride: int) -> "WindowLayout":
        if window is None:
            return cls(tuple(size), ((0, 0),), tuple(size))
        return cls(tuple(size), tuple(window_boxes(size[0], size[1], window, stride)), (window, window))


def frames_to_windows(frames: torch.Tensor, layout: WindowLayout, pre: PreprocessConfig,
                      out: torch.Tensor | None = None, workspace: Workspace | None = None,
                      key: int = 0) -> torch.Tensor:
    """uint8 frames [N, H, W, 3] -> normalised windows [N * B, 3, wh, ww] float32 (image-major), on the frames'
    device: the model's normalisation, a bilinear resize to `layout.size`, the windows cut. Intermediates come from
    `workspace` (under `key`)."""
    pixels = frames.permute(0, 3, 1, 2)  # [N, 3, H, W], channels-last memory: no copy
    values = scratch(workspace, ("pixels", key), pixels.shape, torch.float32, frames.device)
    normalise(pixels, pre, values)  # planar: the resize kernel that splits best across threads
    if tuple(pixels.shape[-2:]) != layout.size:
        resized = scratch(workspace, ("resized", key), (len(frames), 3, *layout.size), torch.float32, frames.device)
        values = resize(values, layout.size, resized)
    return extract_windows(values, layout, out)


def resize(maps: torch.Tensor, size: tuple[int, int], out: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear resize (half-pixel centres, no antialiasing) of [N, C, h, w] to [N, C, H, W], into `out` when given
    (aten's out= form of F.interpolate's kernel: it keeps `out`'s memory format)."""
    if out is None:
        return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return torch.ops.aten.upsample_bilinear2d.out(maps, list(size), False, None, None, out=out)


def extract_windows(images: torch.Tensor, layout: WindowLayout, out: torch.Tensor | None = None) -> torch.Tensor:
    """Windows [N * B, C, wh, ww] (image-major) of images [N, C, h, w].

    out: where to write them (e.g. a slice of one buffer holding the windows of several groups of images).
    """
    n, channels = images.shape[:2]
    (wh, ww), count = layout.window, len(layout.boxes)
    if out is None:
        out = torch.empty(n * count, channels, wh, ww, dtype=images.dtype, device=images.device)
    grid = out.view(n, count, channels, wh, ww)
    for b, (y, x) in enumerate(layout.boxes):
        grid[:, b].copy_(images[:, :, y:y + wh, x:x + ww])
    return out


@functools.lru_cache(maxsize=16)
def _cells(layout: WindowLayout) -> list[tuple[slice, slice, list[int]]]:
    """The image cut along every window edge: (rows, columns, indices of the windows covering the cell)."""
    (wh, ww), boxes = layout.window, layout.boxes
    ys = sorted({y for y, _ in boxes} | {y + wh for y, _ in boxes})
    xs = sorted({x for _, x in boxes} | {x + ww for _, x in boxes})
    cells = []
    for y0, y1 in zip(ys, ys[1:]):
        for x0, x1 in zip(xs, xs[1:]):
            covering = [b for b, (y, x) in enumerate(boxes) if y <= y0 and y1 <= y + wh and x <= x0 and x1 <= x + ww]
            cells.append((slice(y0, y1), slice(x0, x1), covering))
    return cells


def average_windows(probs: torch.Tensor, n: int, layout: WindowLayout, workspace: Workspace | None = None,
                    key: int = 0) -> torch.Tensor:
    """Windows' probabilities [N * B, K, wh, ww] (image-major) -> [N, K, h, w], the mean of the windows covering
    each pixel. Each cell between window edges is written once: a copy, or the windows' sum (in window order)
    divided by their count: bit for bit the sums of the path this replaced, without its zeroed buffers.
    """
    k, (wh, ww), count = probs.shape[1], layout.window, len(layout.boxes)
    per_box = probs.reshape(n, count, k, wh, ww)  # a view of what backends return (contiguous)
    if count == 1:
        return per_box[:, 0]
    out = scratch(workspace, ("maps", key), (n, k, *layout.size), probs.dtype, probs.device)
    for rows, cols, covering in _cells(layout):
        target = out[:, :, rows, cols]
        parts = []
        for b in covering:
            y, x = layout.boxes[b]
            parts.append(per_box[:, b, :, rows.start - y:rows.stop - y, cols.start - x:cols.stop - x])
        if len(parts) == 1:
            target.copy_(parts[0])
            continue
        torch.add(parts[0], parts[1], out=target)
        for part in parts[2:]:
            target += part
        target /= len(parts)
    return out


def run_windows(windows: torch.Tensor, run: Callable[[torch.Tensor], torch.Tensor],
                max_batch: int | None) -> torch.Tensor:
    """run [n, 3, w, w] -> [n, K, w, w] over all windows in batches of at most `max_batch` (None = all at once)."""
    step = max_batch or len(windows)
    outs = [run(windows[s:s + step]) for s in range(0, len(windows), step)]
    return outs[0] if len(outs) == 1 else torch.cat(outs)
