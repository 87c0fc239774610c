"""Probabilities -> the outputs a caller asks for, on the device that computed them: upsampling to the input size,
label map (background threshold), binary masks (also as uint8 mask images, one plane per category), confidence. One
set of functions serves the Python API, evaluation and the node. On the CPU a fused kernel (fused_postprocess.py)
computes the same outputs bit for bit in one pass where it can; elsewhere these torch ops do."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, fields
from types import ModuleType

import numpy as np
import torch

from .preprocess import resize
from .workspace import Workspace, scratch

log = logging.getLogger(__name__)
MASK_ON = 255  # value of a pixel inside a mask image (OpenCV's and the node's convention)
MAX_UINT8_LABEL = 255  # compact labels are uint8 up to this many categories, uint16 above


@dataclass(frozen=True)
class Outputs:
    """Which results `Segmenter.segment` computes and copies to host memory (names as in SegmentationResult)."""

    labels: bool = True  # [H, W] int32; with compact_labels uint8 (uint16 above 255 categories)
    masks: bool = True  # [K, H, W] bool
    confidence: bool = True  # [H, W] float32
    probabilities: bool = True  # [K, H, W] float32
    mask_images: bool = False  # [K, H, W] uint8, MASK_ON inside, each plane contiguous: K mono8 images
    compact_labels: bool = False

    @classmethod
    def for_images(cls, masks: bool = True, confidence: bool = True) -> "Outputs":
        """What a publisher of image messages needs, already in their pixel formats: compact labels, mono8 mask
        planes (with `masks`) and confidence (with `confidence`); no float maps."""
        return cls(labels=True, masks=False, probabilities=False, compact_labels=True, confidence=confidence,
                   mask_images=masks)

    def names(self) -> list[str]:
        """The requested result names, in a fixed order."""
        return [f.name for f in fields(self) if f.name != "compact_labels" and getattr(self, f.name)]


@dataclass
class Labelled:
    labels: torch.Tensor  # [..., H, W] int32: 0 = background, k = k-th category (1-based)
    masks: torch.Tensor  # [..., K, H, W] bool: probability > mask_threshold (masks may overlap)
    confidence: torch.Tensor  # [..., H, W] float32: probability of the winning category, clamped to [0, 1]


def winning_labels(probs: torch.Tensor, peak: torch.Tensor, background_threshold: float | None,
                   dtype: torch.dtype = torch.int32, workspace: Workspace | None = None, key: int = 0) -> torch.Tensor:
    """Labels [..., H, W] of the probabilities clamped to [0, 1]: 1 + the first category reaching the pixel's
    maximum (argmax's rule for ties), or 0 (background) where that maximum is at most `background_threshold`
    (None = no background).

    Args:
        probs: [..., K, H, W] probabilities, clamped or not (upsampling can overshoot [0, 1] by a rounding error).
        peak: [..., H, W] their clamped maximum over K, exactly `torch.amax(probs, -3).clamp(0, 1)`.

    Why no clamped copy of `probs`: where the peak is above 0, a clamped value equals it exactly when the raw value
    is at least the peak, so `probs >= peak` finds the clamped maps' ties; where it is 0, every clamped category
    ties and the first wins. Why not `torch.max(dim)`: its index-tracking reduction runs several times slower on the
    CPU than three vectorised passes: which categories hit the maximum, each hit weighted K - 1 - k, the largest
    weight.
    """
    k = probs.shape[-3]
    rank_dtype = torch.uint8 if k <= MAX_UINT8_LABEL else torch.int16
    hits = scratch(workspace, ("hits", key), probs.shape, torch.bool, probs.device)
    torch.ge(probs, peak.unsqueeze(-3), out=hits)  # `ge`, not `eq`: the same where the peak is above 0, and faster
    ranks = hits.view(torch.uint8) if rank_dtype == torch.uint8 else hits.to(rank_dtype)
    weights, count = _rank_weights(k, rank_dtype, probs.device)
    ranks.mul_(weights)
    labels = torch.empty(peak.shape, dtype=dtype, device=probs.device)
    torch.sub(count, torch.amax(ranks, dim=-3), out=labels)  # K - (K - 1 - first) = first + 1
    if background_threshold is None or background_threshold < 0:
        labels.masked_fill_(peak == 0, 1)  # all clamped to 0: a tie of every category (background takes it else)
    if background_threshold is not None:
        labels.mul_(peak > background_threshold)
    return labels


@functools.lru_cache(maxsize=16)
def _rank_weights(k: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[K, 1, 1] = K - 1 - k (the first of several maxima weighs most), and K as a 0-d tensor of the same dtype
    (so the subtraction runs in that dtype); made once per device."""
    return (torch.arange(k - 1, -1, -1, dtype=dtype).view(k, 1, 1).to(device),
            torch.tensor(k, dtype=dtype).to(device))


def labels_from_probabilities(probs: torch.Tensor | np.ndarray, background_threshold: float | None,
                              mask_threshold: float) -> Labelled:
    """Label a stack of per-category probability maps.

    Args:
        probs: [..., K, H, W] independent per-category probabilities (sigmoids, not a softmax).
        background_threshold: pixels whose best probability is at most this get label 0 (TCL's constant background
            score); None = no-background mode, every pixel gets its best category.
        mask_threshold: per-category binary mask threshold.
    """
    p = torch.as_tensor(probs).float()
    if p.ndim < 3 or p.shape[-3] == 0:
        raise ValueError(f"probabilities must be [..., K, H, W] with K >= 1, got shape {tuple(p.shape)}")
    confidence = torch.amax(p, dim=-3).clamp_(0, 1)
    return Labelled(labels=winning_labels(p, confidence, background_threshold), masks=p > mask_threshold,
                    confidence=confidence)


def upsample(maps: torch.Tensor, size: tuple[int, int], out: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear resize of [N, K, h, w] maps to [N, K, H, W], into `out` when given; `maps` itself when the size is
    already right."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return resize(maps, size, out)


def compact_label_dtype(num_categories: int) -> torch.dtype:
    """uint8 up to MAX_UINT8_LABEL categories, else int16 (read as uint16 on the host; the category limit is far
    below 32767)."""
    return torch.uint8 if num_categories <= MAX_UINT8_LABEL else torch.int16


def postprocess(maps: torch.Tensor, size: tuple[int, int], background_threshold: float | None,
                mask_threshold: float, outputs: Outputs, workspace: Workspace | None = None,
                key: int = 0) -> dict[str, torch.Tensor]:
    """The requested outputs of a batch of same-size images, computed where `maps` live.

    Args:
        maps: probabilities [N, K, h, w] at the model's resolution (clamped in place when no resize is needed, they
            are not returned and the mask threshold lies outside [0, 1)).
        size: the input images' (H, W).
        background_threshold, mask_threshold: as in `labels_from_probabilities`, both in [0, 1).
        workspace, key: where intermediates are kept between calls (the results are always new tensors).
    Returns:
        by name (see `Outputs`), each with a leading N: labels [N, H, W], masks [N, K, H, W] bool, confidence
        [N, H, W], probabilities [N, K, H, W], mask_images [N, K, H, W] uint8 (contiguous).
    """
    n, k, device = maps.shape[0], maps.shape[1], maps.device
    if fused_kernel_serves(maps, size):
        return _fused().fused_postprocess(maps, size, background_threshold, mask_threshold, outputs)
    returned = outputs.probabilities
    target = None if returned or workspace is None else workspace.tensor(
        ("probabilities", key), (n, k, *size), maps.dtype, device)
    probs = upsample(maps, size, target)
    if returned and probs is maps:  # no resize: never hand out the caller's (or a workspace's) tensor
        probs = probs.clone()
    # The other outputs are the same for raw and clamped maps (see winning_labels; a mask threshold in [0, 1) gives
    # the same masks), so the pass that clamps every map runs only when it changes something.
    masks_need_clamp = (outputs.masks or outputs.mask_images) and not 0 <= mask_threshold < 1
    if returned or masks_need_clamp:
        probs.clamp_(0, 1)
    result: dict[str, torch.Tensor] = {}
    if returned:
        result["probabilities"] = probs
    if outputs.labels or outputs.confidence:
        confidence = torch.empty((n, *size), dtype=maps.dtype, device=device) if outputs.confidence else \
            scratch(workspace, ("confidence", key), (n, *size), maps.dtype, device)
        torch.amax(probs, dim=1, out=confidence).clamp_(0, 1)
        if outputs.labels:
            dtype = compact_label_dtype(k) if outputs.compact_labels else torch.int32
            result["labels"] = winning_labels(probs, confidence, background_threshold, dtype, workspace, key)
        if outputs.confidence:
            result["confidence"] = confidence
    if outputs.masks:
        result["masks"] = probs > mask_threshold
    if outputs.mask_images:
        planes = torch.empty(probs.shape, dtype=torch.uint8, device=probs.device)  # contiguous whatever probs are
        if outputs.masks:
            planes.copy_(result["masks"])
        else:
            torch.gt(probs, mask_threshold, out=planes.view(torch.bool))
        result["mask_images"] = planes.mul_(MASK_ON)
    return result


def fused_kernel_serves(maps: torch.Tensor, size: tuple[int, int]) -> bool:
    """Whether the fused CPU kernel serves these maps: float32 on the CPU, a resize needed, numba installed and the
    kernel's upsampling proven equal to aten's for this geometry (see fused_postprocess.matches_aten). Contiguous
    only: aten resizes channels-last maps with another kernel, which rounds differently."""
    if (maps.device.type != "cpu" or maps.dtype != torch.float32 or not maps.is_contiguous()
            or tuple(maps.shape[-2:]) == tuple(size)):
        return False
    fused = _fused()
    return fused is not None and fused.matches_aten(maps.shape[1], tuple(maps.shape[-2:]), tuple(size),
                                                    torch.get_num_threads())


@functools.cache
def _fused() -> ModuleType | None:
    """synseg_core.inference.fused_postprocess, or None (logged once) where numba cannot be imported or compile."""
    try:
        from . import fused_postprocess
    except Exception as e:  # ImportError, or numba's own errors (e.g. no writable cache folder)
        log.warning("fused CPU post-processing unavailable (%s: %s): it runs as separate torch ops",
                    type(e).__name__, e)
        return None
    return fused_postprocess
