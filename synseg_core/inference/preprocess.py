"""Image validation, normalisation, short-side resize and sliding-window inference (paper_spec.md 6, TCL protocol)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import InferenceConfig, PreprocessConfig

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


def to_normalised_tensor(image: np.ndarray, pre: PreprocessConfig, device: torch.device) -> torch.Tensor:
    """HxWx3 uint8 RGB -> [1, 3, H, W] float32 normalised with the model's mean/std."""
    t = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float().div_(255)
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1)
    return (t - mean) / std


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


def sliding_window_probabilities(images: Sequence[torch.Tensor], run: Callable[[torch.Tensor], torch.Tensor],
                                 window: int | None, stride: int, max_batch: int | None = None) -> list[torch.Tensor]:
    """Run windows of several (resized, normalised) images through `run` in shared batches and average overlaps.

    Args:
        images: list of [3, H_i, W_i] tensors (each at least window x window when sliding).
        run: windows [N, 3, w, w] -> probabilities [N, K, w, w].
        window: window side, or None to run each image whole (all images must then share one size).
        stride: window stride.
        max_batch: largest number of windows per `run` call (None = all at once).
    Returns:
        list of probabilities [K, H_i, W_i], the mean over the windows covering each pixel.
    """
    meta, windows = [], []
    for i, img in enumerate(images):
        h, w = img.shape[-2:]
        boxes = [(0, 0)] if window is None else window_boxes(h, w, window, stride)
        size = (h, w) if window is None else (window, window)
        for y, x in boxes:
            meta.append((i, y, x, size))
            windows.append(img[:, y:y + size[0], x:x + size[1]])
    step = max_batch or len(windows)
    outs = [run(torch.stack(windows[s:s + step])) for s in range(0, len(windows), step)]
    probs = torch.cat(outs)
    if len(windows) == len(images):  # one window per image covers it whole: nothing to average
        return list(probs)
    k = probs.shape[1]
    sums = [img.new_zeros(k, *img.shape[-2:]) for img in images]
    counts = [img.new_zeros(1, *img.shape[-2:]) for img in images]
    for (i, y, x, (wh, ww)), p in zip(meta, probs):
        sums[i][:, y:y + wh, x:x + ww] += p
        counts[i][:, y:y + wh, x:x + ww] += 1
    return [s / c for s, c in zip(sums, counts)]


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [K, h, w] maps to [K, H, W]."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]
