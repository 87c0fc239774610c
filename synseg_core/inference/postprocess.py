"""Probabilities -> label map, binary masks and confidence: one pure function for the API, evaluation and the node."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Labelled:
    labels: torch.Tensor  # [..., H, W] int32: 0 = background, k = k-th category (1-based)
    masks: torch.Tensor  # [..., K, H, W] bool: probability > mask_threshold (masks may overlap)
    confidence: torch.Tensor  # [..., H, W] float32: probability of the winning category


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
    confidence, best = p.max(dim=-3)
    labels = (best + 1).to(torch.int32)
    if background_threshold is not None:
        labels = torch.where(confidence <= background_threshold, torch.zeros_like(labels), labels)
    return Labelled(labels=labels, masks=p > mask_threshold, confidence=confidence)
