"""Binary masks of the vocabulary's shapes at any position, size and rotation."""
from __future__ import annotations

import math

import cv2
import numpy as np

from .vocabulary import SHAPES

# Star: ratio of the inner to the outer radius (0.45 gives clearly pointed arms at small sizes).
STAR_POINTS = 5
STAR_INNER_RATIO = 0.45
# Cross: half-width of each arm as a fraction of the arm length (a plus sign with arms of equal width).
CROSS_ARM_HALF_WIDTH = 0.34
# Sub-pixel precision of cv2 drawing: coordinates are passed as integers scaled by 2**_SHIFT.
_SHIFT = 4


def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices of a shape with circumradius 1 centred at the origin, y pointing down: float [V, 2]."""
    if shape == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) / math.sqrt(2.0)
    if shape == "triangle":
        angles = np.deg2rad([-90.0, 30.0, 150.0])
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "star":
        angles = -math.pi / 2 + np.arange(2 * STAR_POINTS) * math.pi / STAR_POINTS
        radii = np.where(np.arange(2 * STAR_POINTS) % 2 == 0, 1.0, STAR_INNER_RATIO)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    if shape == "cross":
        w = CROSS_ARM_HALF_WIDTH
        return np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w],
                         [w, 1], [-w, 1], [-w, w], [-1, w], [-1, -w], [-w, -w]], dtype=np.float64)
    raise ValueError(f"unknown shape {shape!r}; valid shapes are {list(SHAPES)}")


def shape_mask(shape: str, centre: tuple[float, float], radius: float, angle_deg: float,
               size: tuple[int, int]) -> np.ndarray:
    """Rasterise one shape.

    Args:
        shape: one of :data:`SHAPES`.
        centre: (x, y) in pixels.
        radius: circumradius in pixels (half the diameter of the enclosing circle).
        angle_deg: rotation, clockwise in image coordinates (ignored for circles).
        size: (height, width) of the mask.

    Returns:
        bool mask [H, W].

    Raises:
        ValueError: unknown shape or non-positive radius.
    """
    if radius <= 0:
        raise ValueError(f"shape radius must be positive, got {radius}")
    canvas = np.zeros(size, dtype=np.uint8)
    scale = 1 << _SHIFT
    cx, cy = centre
    if shape == "circle":
        cv2.circle(canvas, (round(cx * scale), round(cy * scale)), round(radius * scale), 1, -1, cv2.LINE_8, _SHIFT)
        return canvas.astype(bool)
    theta = math.radians(angle_deg)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    points = _unit_polygon(shape) @ rotation.T * radius + np.array([cx, cy])  # [V, 2] (x, y)
    cv2.fillPoly(canvas, [np.round(points * scale).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    return canvas.astype(bool)
