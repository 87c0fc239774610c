"""PAMR: pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020), as TCL uses it for evaluation.

Each iteration replaces every pixel's class scores by an affinity-weighted average of its neighbours' scores,
where neighbours are the 8 pixels around it at several dilations and the affinity is a softmax over neighbours
of ``-|I(p) - I(q)| / (0.1 * local std of I)``, averaged over colour channels. The result follows image edges.

Memory: the reference implementation materialises ``[B, C, 8*len(dilations), H, W]`` for the class scores; here
the neighbours are visited one offset at a time, so refining full-resolution maps with many classes needs only
``O(C * H * W)`` besides the ``[B, P, H, W]`` affinities.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

# The 8 neighbours of a 3x3 window in the order of the reference kernels (row-major, centre skipped).
_NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
_WINDOW = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


@dataclass(frozen=True)
class PAMRConfig:
    """PAMR settings (TCL's evaluation values by default).

    Attributes:
        num_iter: refinement iterations.
        dilations: neighbourhood dilations in pixels.
        std_scale: the local standard deviation is multiplied by this before dividing colour distances.
        eps: added to the scaled standard deviation so flat regions do not divide by zero.
    """

    num_iter: int = 10
    dilations: tuple[int, ...] = field(default=(1, 2, 4, 8, 12, 24))
    std_scale: float = 0.1
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.num_iter < 0:
            raise ValueError(f"PAMR num_iter must be >= 0, got {self.num_iter}")
        if not self.dilations or any(d < 1 for d in self.dilations):
            raise ValueError(f"PAMR dilations must be a non-empty list of positive ints, got {self.dilations}")


def _shifted(x: torch.Tensor, padded: torch.Tensor, pad: int, dilation: int, dy: int, dx: int) -> torch.Tensor:
    """``x`` shifted so that output[p] = x[p + dilation * (dy, dx)], with replicate borders."""
    h, w = x.shape[-2:]
    top, left = pad + dy * dilation, pad + dx * dilation
    return padded[..., top : top + h, left : left + w]


def _local_affinity(image: torch.Tensor, config: PAMRConfig) -> torch.Tensor:
    """Neighbour weights of every pixel.

    Args:
        image: [B, 3, H, W] float image (any per-channel affine normalisation gives the same result).

    Returns:
        [B, P, H, W] weights summing to 1 over the P = 8 * len(dilations) neighbours.
    """
    pad = max(config.dilations)
    padded = F.pad(image, [pad] * 4, mode="replicate")
    window = torch.stack(
        [_shifted(image, padded, pad, d, dy, dx) for d in config.dilations for dy, dx in _WINDOW], dim=2
    )  # [B, 3, 9 * D, H, W]
    std = window.std(dim=2)  # [B, 3, H, W]
    dist = torch.stack(
        [(image - _shifted(image, padded, pad, d, dy, dx)).abs() for d in config.dilations for dy, dx in _NEIGHBOURS],
        dim=2,
    )  # [B, 3, P, H, W]
    logits = -dist / (config.eps + config.std_scale * std.unsqueeze(2))
    return F.softmax(logits.mean(dim=1), dim=1)


@torch.no_grad()
def pamr_refine(image: torch.Tensor, masks: torch.Tensor, config: PAMRConfig | None = None) -> torch.Tensor:
    """Refine soft masks along image edges.

    Args:
        image: [B, 3, H, W] float image.
        masks: [B, C, h, w] class scores; resized to [H, W] first (bilinear, align_corners=True, as TCL).
        config: PAMR settings; TCL's by default.

    Returns:
        [B, C, H, W] refined scores. Per pixel, the sum over classes is preserved (weights sum to 1).
    """
    config = config or PAMRConfig()
    if image.dim() != 4 or masks.dim() != 4 or image.shape[0] != masks.shape[0]:
        raise ValueError(
            f"expected image [B,3,H,W] and masks [B,C,h,w], got {tuple(image.shape)}, {tuple(masks.shape)}"
        )
    image = image.float()
    masks = F.interpolate(masks.float(), size=image.shape[-2:], mode="bilinear", align_corners=True)
    affinity = _local_affinity(image, config)  # [B, P, H, W]
    pad = max(config.dilations)
    offsets = [(d, dy, dx) for d in config.dilations for dy, dx in _NEIGHBOURS]
    for _ in range(config.num_iter):
        padded = F.pad(masks, [pad] * 4, mode="replicate")
        refined = torch.zeros_like(masks)
        for p, (d, dy, dx) in enumerate(offsets):
            refined.addcmul_(affinity[:, p : p + 1], _shifted(masks, padded, pad, d, dy, dx))
        masks = refined
    return masks
