"""`postprocess` on the CPU in one pass per output row: bilinear upsampling, clamping, peak, labels, masks and mask
images computed together, so the K full-size maps are never written and read back (the separate torch ops make
five passes over them). Compiled with numba; the rows are split into as many bands as torch has intra-op threads.

Bit for bit the torch ops: the interpolation repeats the arithmetic of aten's generic CPU bilinear kernel (source
coordinates and both interpolation levels with fused multiply-adds, as its compiled kernel does on FMA machines),
and the labelling repeats `winning_labels`' rules, NaN included. aten has other kernels too (a separable one for
small outputs and for three channels on one thread; a vectorised one for channels-last maps, which never come
here), and other builds may round differently: the check run once per geometry and thread count (`matches_aten`)
finds any difference, and `postprocess` then keeps its torch ops.
"""
from __future__ import annotations

import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit, types
from numba.extending import intrinsic

from .postprocess import Outputs, compact_label_dtype
from .preprocess import resize

log = logging.getLogger(__name__)

OUTPUT_NAMES = ("probabilities", "masks", "mask_images", "confidence", "labels")  # the kernel's argument order
PLANE_OUTPUTS = ("probabilities", "masks", "mask_images")  # [N, K, H, W]; the others [N, H, W]
OUTPUT_DTYPES = {"probabilities": torch.float32, "masks": torch.bool, "mask_images": torch.uint8,
                 "confidence": torch.float32, "labels": torch.int32}


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma): numba never contracts a multiply and an add by itself."""
    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@njit(nogil=True, cache=True)
def _interpolate_row(src, i0, i1, w0, w1, dst):
    for x in range(dst.shape[0]):
        dst[x] = _fma(src[i0[x]], w0[x], src[i1[x]] * w1[x])


@njit(nogil=True, cache=True)
def _postprocess_rows(maps, rows_y, cols_x, start, stop, clamp, mask_threshold, background_threshold, has_background,
                      fill_zero_peaks, probabilities, masks, mask_images, confidence, labels):
    """Output rows [start, stop) of the batch (row g = image g // H, row g % H). An output array with no elements is
    not computed. rows_y / cols_x: (first source index, second, first weight, second weight) per output row /
    column. Horizontal interpolations of source rows are kept while consecutive output rows share them."""
    k_count, height, width = maps.shape[1], rows_y[0].shape[0], cols_x[0].shape[0]
    y0, y1, wy0, wy1 = rows_y
    x0, x1, wx0, wx1 = cols_x
    upper, lower = np.empty((k_count, width), np.float32), np.empty((k_count, width), np.float32)
    values = np.empty((k_count, width), np.float32)
    peak, label = np.empty(width, np.float32), np.empty(width, np.int32)
    want_probabilities, want_masks, want_images = probabilities.size > 0, masks.size > 0, mask_images.size > 0
    want_confidence, want_labels = confidence.size > 0, labels.size > 0
    upper_row, lower_row, image = -1, -1, -1
    for g in range(start, stop):
        n, y = g // height, g % height
        if n != image:
            upper_row, lower_row, image = -1, -1, n
        a, b = y0[y], y1[y]
        if a != upper_row:
            if a == lower_row:
                upper, lower, lower_row = lower, upper, -1
            else:
                for k in range(k_count):
                    _interpolate_row(maps[n, k, a], x0, x1, wx0, wx1, upper[k])
            upper_row = a
        if b != lower_row:
            for k in range(k_count):
                _interpolate_row(maps[n, k, b], x0, x1, wx0, wx1, lower[k])
            lower_row = b
        w0, w1 = wy0[y], wy1[y]
        for k in range(k_count):
            top, bottom, row = upper[k], lower[k], values[k]
            for x in range(width):
                v = _fma(top[x], w0, bottom[x] * w1)
                if clamp and v == v:  # torch's clamp keeps NaN
                    v = min(max(v, np.float32(0)), np.float32(1))
                row[x] = v
            if want_probabilities:
                probabilities[n, k, y, :] = row
            if want_masks:
                plane = masks[n, k, y]
                for x in range(width):
                    plane[x] = row[x] > mask_threshold
            if want_images:
                plane = mask_images[n, k, y]
                for x in range(width):
                    plane[x] = 255 if row[x] > mask_threshold else 0
        if not (want_confidence or want_labels):
            continue
        peak[:] = values[0]
        for k in range(1, k_count):  # torch.amax: NaN wins
            row = values[k]
            for x in range(width):
                v = row[x]
                peak[x] = v if v > peak[x] or v != v else peak[x]
        for x in range(width):
            p = peak[x]
            peak[x] = min(max(p, np.float32(0)), np.float32(1)) if p == p else p
        if want_confidence:
            confidence[n, y, :] = peak
        if want_labels:  # winning_labels: the first category reaching the peak, K where none does (NaN peaks)
            label[:] = k_count
            for k in range(k_count - 1, -1, -1):
                row = values[k]
                for x in range(width):
                    label[x] = k + 1 if row[x] >= peak[x] else label[x]
            if fill_zero_peaks:
                for x in range(width):
                    label[x] = 1 if peak[x] == 0 else label[x]
            if has_background:
                for x in range(width):
                    label[x] = label[x] if peak[x] > background_threshold else 0
            out = labels[n, y]
            for x in range(width):
                out[x] = label[x]
    return 0


@functools.lru_cache(maxsize=64)
def source_indices(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """aten's bilinear sampling along one axis (half-pixel centres, no antialiasing): per target index, the two source
    indices and their weights. The source coordinate scale * (i + 0.5) - 0.5 is rounded once to float32, as the
    compiled kernel's fused multiply-add does (float64 holds the product exactly)."""
    scale = np.float32(np.float32(source) / np.float32(target))
    coordinate = (np.float64(scale) * (np.arange(target) + 0.5) - 0.5).astype(np.float32)
    coordinate = np.maximum(coordinate, np.float32(0))
    first = coordinate.astype(np.int64)
    weight1 = np.clip(coordinate - first.astype(np.float32), np.float32(0), np.float32(1)).astype(np.float32)
    second = first if source == target else first + (first < source - 1)  # aten reads one row of an unresized axis
    return first, second, (np.float32(1) - weight1).astype(np.float32), weight1


@functools.cache
def _band_pool() -> ThreadPoolExecutor:
    """Threads for the bands beyond the caller's own, shared by all calls (each call waits for its own bands)."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="synseg-postprocess")


def _run_split(maps: np.ndarray, size: tuple[int, int], clamp: bool, mask_threshold: float,
               background_threshold: float | None, out: list[np.ndarray]) -> None:
    """The kernel over all output rows, split into torch.get_num_threads() bands run at once (the kernel releases
    the GIL)."""
    rows = len(maps) * size[0]
    bands = max(1, min(torch.get_num_threads(), rows))
    args = (source_indices(maps.shape[2], size[0]), source_indices(maps.shape[3], size[1]))
    tail = (clamp, np.float32(mask_threshold), np.float32(background_threshold or 0), background_threshold is not None,
            background_threshold is None or background_threshold < 0, *out)
    cuts = [rows * i // bands for i in range(bands + 1)]
    others = [_band_pool().submit(_postprocess_rows, maps, *args, cuts[i], cuts[i + 1], *tail) for i in range(1, bands)]
    _postprocess_rows(maps, *args, cuts[0], cuts[1], *tail)
    for band in others:
        band.result()


# aten picks its bilinear kernel by the channel count only among small counts (three channels on one thread): a check
# with more maps than this stands for every larger count, so a query of many categories is not checked at full size
DECISIVE_CATEGORY_COUNT = 4


def matches_aten(categories: int, source: tuple[int, int], target: tuple[int, int], threads: int) -> bool:
    """Whether the kernel's upsampling of `categories` maps equals aten's bit for bit, NaN included, for this geometry
    with this many torch threads on this machine (checked once, on random maps overshooting [0, 1] with a NaN, at
    most DECISIVE_CATEGORY_COUNT + 1 of them); logs why not."""
    return _matches_aten(min(categories, DECISIVE_CATEGORY_COUNT + 1), tuple(source), tuple(target), threads)


@functools.lru_cache(maxsize=64)
def _matches_aten(categories: int, source: tuple[int, int], target: tuple[int, int], threads: int) -> bool:
    probe = torch.rand((1, categories, *source), generator=torch.Generator().manual_seed(0)) * 1.25 - 0.125
    probe[0, 0, source[0] // 2, source[1] // 2] = float("nan")
    want = resize(probe, target).numpy()
    got = np.empty(want.shape, np.float32)
    _run_split(probe.numpy(), target, False, 0.5, None, _kernel_outputs({"probabilities": got}))
    if np.array_equal(got, want, equal_nan=True):
        return True
    differ = ~((got == want) | (np.isnan(got) & np.isnan(want)))
    # info, not a warning: small outputs are the expected case (aten's separable kernel), and nothing is wrong
    log.info("the fused CPU post-processing does not reproduce this torch build's bilinear resize %s -> %s of %d "
             "maps with %d threads (%d of %d values differ): post-processing runs as separate torch ops", source,
             target, categories, threads, np.count_nonzero(differ), differ.size)
    return False


def _kernel_outputs(computed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The kernel's output arguments in OUTPUT_NAMES order: the computed arrays, and for the rest empty arrays of the
    kernel's default types (not computed)."""
    return [computed[name] if name in computed else
            torch.empty((0,) * (4 if name in PLANE_OUTPUTS else 3), dtype=OUTPUT_DTYPES[name]).numpy()
            for name in OUTPUT_NAMES]


def fused_postprocess(maps: torch.Tensor, size: tuple[int, int], background_threshold: float | None,
                      mask_threshold: float, outputs: Outputs) -> dict[str, torch.Tensor]:
    """`postprocess`'s outputs for contiguous float32 CPU maps [N, K, h, w] that need a resize (see
    `matches_aten`), as new tensors."""
    n, k = maps.shape[:2]
    dtypes = {**OUTPUT_DTYPES, "labels": compact_label_dtype(k) if outputs.compact_labels else torch.int32}
    computed = {name: torch.empty((n, k, *size) if name in PLANE_OUTPUTS else (n, *size), dtype=dtypes[name])
                for name in outputs.names()}
    # The clamp changes masks only for thresholds outside [0, 1) (see postprocess); labels never.
    clamp = outputs.probabilities or ((outputs.masks or outputs.mask_images) and not 0 <= mask_threshold < 1)
    _run_split(maps.numpy(), size, clamp, mask_threshold, background_threshold,
               _kernel_outputs({name: tensor.numpy() for name, tensor in computed.items()}))
    return computed
