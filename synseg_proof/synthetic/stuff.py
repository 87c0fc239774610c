"""Stuff regions: the background layout of an image and the look of each stuff kind (flat or textured)."""
from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from .vocabulary import STUFF

Size = tuple[int, int]

# Texture recipes. Amplitudes are relative brightness changes around the stuff's base colour; "cells" is the
# number of noise cells across the image (fewer cells = larger blobs). They only shape the look of the images.
GRASS_BLOB_CELLS, GRASS_BLOB_AMP = 6, 0.18
GRASS_BLADE_ROWS_DIVISOR, GRASS_BLADE_AMP = 5, 0.22  # blades: noise stretched vertically by this factor
FINE_NOISE_AMP = 0.06
WATER_WAVES_PER_IMAGE, WATER_WAVE_AMP, WATER_WARP = 9.0, 0.16, 2.5
WATER_GLINT_LEVEL, WATER_GLINT_GAIN = 0.9, 400.0  # white glints on wave crests
SAND_BLOB_CELLS, SAND_BLOB_AMP, SAND_SPECKLE_AMP, SAND_RIPPLES, SAND_RIPPLE_AMP = 5, 0.08, 0.10, 14.0, 0.05
SKY_TOP_GAIN, SKY_BOTTOM_GAIN = 0.78, 1.12  # vertical gradient: darker blue at the top
SKY_CLOUD_CELLS, SKY_CLOUD_LEVEL, SKY_CLOUD_GAIN, SKY_CLOUD_MAX = 4, 0.5, 1.5, 0.85
SNOW_SHADOW_CELLS, SNOW_SHADOW_AMP = 5, 0.07
ROAD_BLOB_CELLS, ROAD_BLOB_AMP, ROAD_SPECKLE_AMP = 8, 0.10, 0.15
WHITE = 250.0
LAYOUT_WAVES_PER_IMAGE = (0.5, 2.0)  # periods of a region boundary's wave across the image width


def smooth_noise(rng: np.random.Generator, size: Size, cells: tuple[int, int]) -> np.ndarray:
    """Band-limited noise: a (rows x cols) Gaussian grid upsampled bicubically, then standardised.

    Returns:
        float32 [H, W] with mean ~0 and std ~1.
    """
    grid = rng.standard_normal(cells).astype(np.float32)
    noise = cv2.resize(grid, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    return (noise - noise.mean()) / max(float(noise.std()), 1e-6)


def _fine(rng: np.random.Generator, size: Size) -> np.ndarray:
    return rng.standard_normal(size).astype(np.float32)


def _shade(gain: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Brightness field [H, W] times base colour [3] -> RGB [H, W, 3]."""
    return gain[..., None] * base


def _grass(rng: np.random.Generator, size: Size, base: np.ndarray) -> np.ndarray:
    h, w = size
    blades = smooth_noise(rng, size, (max(h // GRASS_BLADE_ROWS_DIVISOR, 2), w))
    blobs = smooth_noise(rng, size, (GRASS_BLOB_CELLS, GRASS_BLOB_CELLS))
    return _shade(1 + GRASS_BLOB_AMP * blobs + GRASS_BLADE_AMP * blades + FINE_NOISE_AMP * _fine(rng, size), base)


def _water(rng: np.random.Generator, size: Size, base: np.ndarray) -> np.ndarray:
    h, _ = size
    rows = np.arange(h, dtype=np.float32)[:, None] / h
    warp = smooth_noise(rng, size, (3, 3))
    wave = np.sin(2 * math.pi * WATER_WAVES_PER_IMAGE * rows + WATER_WARP * warp + rng.uniform(0, 2 * math.pi))
    image = _shade(1 + WATER_WAVE_AMP * wave + FINE_NOISE_AMP * _fine(rng, size), base)
    return image + WATER_GLINT_GAIN * np.clip(wave - WATER_GLINT_LEVEL, 0, None)[..., None]


def _sand(rng: np.random.Generator, size: Size, base: np.ndarray) -> np.ndarray:
    h, w = size
    diag = (np.arange(h)[:, None] + np.arange(w)[None, :]).astype(np.float32) / (h + w)
    ripples = np.sin(2 * math.pi * SAND_RIPPLES * diag + rng.uniform(0, 2 * math.pi))
    blobs = smooth_noise(rng, size, (SAND_BLOB_CELLS, SAND_BLOB_CELLS))
    return _shade(1 + SAND_BLOB_AMP * blobs + SAND_SPECKLE_AMP * _fine(rng, size) + SAND_RIPPLE_AMP * ripples, base)


def _sky(rng: np.random.Generator, size: Size, base: np.ndarray) -> np.ndarray:
    h, w = size
    gradient = np.broadcast_to(np.linspace(SKY_TOP_GAIN, SKY_BOTTOM_GAIN, h, dtype=np.float32)[:, None], (h, w))
    cloud = smooth_noise(rng, size, (SKY_CLOUD_CELLS, SKY_CLOUD_CELLS))
    alpha = np.clip((cloud - SKY_CLOUD_LEVEL) * SKY_CLOUD_GAIN, 0, SKY_CLOUD_MAX)[..., None]
    return _shade(gradient, base) * (1 - alpha) + WHITE * alpha


def _snow(rng: np.random.Generator, size: Size, base: np.ndarray) -> np.ndarray:
    shadows = np.abs(smooth_noise(rng, size, (SNOW_SHADOW_CELLS, SNOW_SHADOW_CELLS)))
    return _shade(1 - SNOW_SHADOW_AMP * shadows + FINE_NOISE_AMP / 2 * _fine(rng, size), base)


def _road(rng: np.random.Generator, size: Size, base: np.ndarray) -> np.ndarray:
    blobs = smooth_noise(rng, size, (ROAD_BLOB_CELLS, ROAD_BLOB_CELLS))
    return _shade(1 + ROAD_BLOB_AMP * blobs + ROAD_SPECKLE_AMP * _fine(rng, size), base)


# Each recipe draws its stuff over a whole canvas: (rng, (H, W), base RGB [3]) -> float RGB [H, W, 3].
_TEXTURES: dict[str, Callable[[np.random.Generator, Size, np.ndarray], np.ndarray]] = {
    "grass": _grass, "water": _water, "sand": _sand, "sky": _sky, "snow": _snow, "road": _road,
}


def render_stuff(name: str, size: Size, rng: np.random.Generator, textured: bool,
                 brightness_jitter: float) -> np.ndarray:
    """Fill a whole canvas with one stuff kind.

    Args:
        name: stuff category (a key of :data:`STUFF`).
        size: (height, width).
        rng: random source.
        textured: draw the stuff's texture recipe; otherwise a flat base colour.
        brightness_jitter: the whole region's brightness is scaled by a factor in 1 +- this.

    Returns:
        float32 RGB [H, W, 3] in about 0..255 (not clipped; the caller clips after compositing).

    Raises:
        ValueError: unknown stuff name.
    """
    if name not in STUFF:
        raise ValueError(f"unknown stuff {name!r}; valid stuff categories are {list(STUFF)}")
    style = STUFF[name]
    base = np.asarray(style.colour, dtype=np.float32) * (1 + rng.uniform(-brightness_jitter, brightness_jitter))
    if not textured:
        return np.broadcast_to(base, (*size, 3)).astype(np.float32)
    return _TEXTURES[style.texture](rng, size, base).astype(np.float32)


def stuff_layout(rng: np.random.Generator, regions: int, size: Size, boundary: tuple[float, float],
                 wave_amplitude: float) -> np.ndarray:
    """Split the canvas into stacked regions along wavy, roughly horizontal boundaries.

    Args:
        rng: random source.
        regions: 1 or 2.
        size: (height, width).
        boundary: range of the boundary's mean height as a fraction of the image height.
        wave_amplitude: boundary waviness as a fraction of the image height.

    Returns:
        uint8 [H, W]: 0 for the upper region, 1 for the lower one.

    Raises:
        ValueError: ``regions`` is not 1 or 2.
    """
    h, w = size
    if regions == 1:
        return np.zeros(size, dtype=np.uint8)
    if regions != 2:
        raise ValueError(f"a stuff layout has 1 or 2 regions, got {regions}")
    level = rng.uniform(*boundary) * h
    cols = np.arange(w, dtype=np.float32) / w
    waves = rng.uniform(*LAYOUT_WAVES_PER_IMAGE)
    line = level + wave_amplitude * h * np.sin(2 * math.pi * waves * cols + rng.uniform(0, 2 * math.pi))
    rows = np.arange(h, dtype=np.float32)[:, None]
    return (rows >= line[None, :]).astype(np.uint8)
