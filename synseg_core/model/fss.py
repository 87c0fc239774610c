"""Feature Synergy Structure (training only, docs/method.md §5): projected conditional features pooled
by the soft semantic-activation map (foreground) and its complement (background)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SynergyConfig
from .decoder import DecoderOutput


def build_projector(kind: str, reduce_dim: int, text_dim: int) -> nn.Module:
    """Convolutional projector from the decoder width to the text dimension (the paper leaves its layers open)."""
    if kind == "conv1x1":
        return nn.Conv2d(reduce_dim, text_dim, kernel_size=1)
    return nn.Sequential(nn.Conv2d(reduce_dim, text_dim, 1), nn.GELU(), nn.Conv2d(text_dim, text_dim, 1))


@dataclass
class SynergyFeatures:
    foreground: torch.Tensor  # f_c  [M, D]
    background: torch.Tensor  # f̄_c [M, D]


class FeatureSynergy(nn.Module):
    def __init__(self, cfg: SynergyConfig, reduce_dim: int, text_dim: int):
        super().__init__()
        self.source = cfg.source
        self.projector = build_projector(cfg.projector, reduce_dim, text_dim)

    def forward(self, decoded: DecoderOutput, maps: torch.Tensor) -> SynergyFeatures:
        """Synergy features from decoder outputs and activation maps A [M, H, W] (not thresholded, not detached)."""
        tokens = {"film_output": decoded.film_output, "unconditioned": decoded.unconditioned,
                  "decoder_tokens": decoded.tokens}[self.source]
        gh, gw = decoded.grid
        spatial = tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], -1, gh, gw)  # drop CLS: [M, r, gh, gw]
        z = self.projector(spatial)  # [M, D, gh, gw]
        a = F.adaptive_avg_pool2d(maps[:, None], (gh, gw))  # [M, 1, gh, gw]
        fg = (a * z).flatten(2).mean(-1)
        bg = ((1 - a) * z).flatten(2).mean(-1)
        return SynergyFeatures(foreground=fg, background=bg)
