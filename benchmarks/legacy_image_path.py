"""The Segmenter's image path as it was before pre- and post-processing moved to the backend's device, kept unchanged
as the reference: the equality tests (tests/inference/test_device_path.py) compare the new path with it, and the
host-time benchmark (benchmarks/host_time.py) times both in one run.

Per frame: the node's conversion of the image message copied it into numpy's planar-strided layout; the uint8 frame
is made contiguous (a second copy) and normalised at full resolution and resized, windows are stacked, overlaps averaged in
freshly zeroed buffers, maps upsampled in [K, H, W] layout, labels/masks/confidence computed, and each output copied
to the host on its own.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from synseg_core.config import PreprocessConfig
from synseg_core.inference.preprocess import model_input_size, validate_image, window_boxes
from synseg_core.inference.segmenter import SegmentationResult, Segmenter, validate_categories


def to_normalised_tensor(image: np.ndarray, pre: PreprocessConfig, device: torch.device) -> torch.Tensor:
    """HxWx3 uint8 RGB -> [1, 3, H, W] float32 normalised with the model's mean/std."""
    t = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float().div_(255)
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1)
    return (t - mean) / std


def sliding_window_probabilities(images: Sequence[torch.Tensor], run: Callable[[torch.Tensor], torch.Tensor],
                                 window: int | None, stride: int, max_batch: int | None = None) -> list[torch.Tensor]:
    """Windows of all images through `run` in shared batches; overlaps averaged. Returns [K, H_i, W_i] per image."""
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


def legacy_image_to_rgb8(msg) -> np.ndarray:
    """The node's conversion of an 8-bit colour `sensor_msgs/Image` before: the RGB channels picked with an index list
    (a copy, which numpy lays out channel by channel)."""
    from synseg_ros.image_conversion import image_to_array

    order = {"rgb": [0, 1, 2], "bgr": [2, 1, 0], "rgba": [0, 1, 2], "bgra": [2, 1, 0]}
    return image_to_array(msg)[:, :, order[msg.encoding.rstrip("0123456789")]]


def legacy_probabilities(segmenter: Segmenter, images: Sequence[np.ndarray], categories: Sequence[str]
                         ) -> list[torch.Tensor]:
    """The old `Segmenter.segment_probabilities`: [K, H_i, W_i] per image."""
    images = [validate_image(im, i) for i, im in enumerate(images)]
    text = segmenter.encode_text(categories)
    cfg, multiple = segmenter.inference, segmenter.model.backbone.patch_size
    with torch.inference_mode():
        tensors = []
        for im in images:
            t = to_normalised_tensor(im, segmenter.model.cfg.preprocess, segmenter.device)
            size = model_input_size(im.shape[0], im.shape[1], cfg, multiple)
            tensors.append(resize_maps(t[0], size))
        run = lambda x: segmenter.backend.run(x, text)  # noqa: E731
        probs = sliding_window_probabilities(tensors, run, cfg.window, cfg.stride, segmenter.backend.max_batch)
        return [resize_maps(p, im.shape[:2]).clamp_(0, 1) for p, im in zip(probs, images)]


def legacy_segment(segmenter: Segmenter, images: Sequence[np.ndarray], categories: Sequence[str],
                   probabilities: bool = True) -> list[SegmentationResult]:
    """The old `Segmenter.segment` on a list of images (labels int32, masks [K, H, W] bool, one copy per output)."""
    cats = validate_categories(categories, segmenter.inference.max_categories)
    cfg = segmenter.inference
    results = []
    with torch.inference_mode():
        for probs in legacy_probabilities(segmenter, images, cats):
            p = probs.float()
            confidence, best = p.max(dim=-3)
            labels = (best + 1).to(torch.int32)
            if cfg.background:
                labels = torch.where(confidence <= cfg.background_threshold, torch.zeros_like(labels), labels)
            results.append(SegmentationResult(
                categories=list(cats), probabilities=probs.cpu().numpy() if probabilities else None,
                masks=(p > cfg.mask_threshold).cpu().numpy(), labels=labels.cpu().numpy(),
                confidence=confidence.cpu().numpy()))
    return results
