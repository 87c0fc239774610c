"""What one training step computes: SynSeg's training forward plus MCCL as one module, and the step's outcome."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ..model.synseg import SynSeg
from .losses import synseg_loss

LOSS_TERMS = ("total", "align", "cont", "back", "sep", "area", "absent")


@dataclass
class StepOutcome:
    """What one step did: "ok" (weights updated), "nonfinite" (skipped) or "empty" (no usable image on a rank)."""

    status: Literal["ok", "nonfinite", "empty"]
    losses: dict[str, float] = field(default_factory=dict)
    grad_norm: float = math.nan
    images: int = 0


class MCCLStep(nn.Module):
    """`forward` = `SynSeg.forward_train` + MCCL, returning the loss terms as a dict, so DistributedDataParallel
    (which only hooks `forward`) can wrap the training path."""

    def __init__(self, model: SynSeg):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, text: torch.Tensor, owner: torch.Tensor,
                absent_text: torch.Tensor | None, absent_owner: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Loss terms (scalars) of images [B, 3, S, S] with category embeddings text [M, D] owned by owner [M]."""
        out = self.model.forward_train(images, text, owner, absent_text, absent_owner)
        terms = synseg_loss(out, text, owner, images.shape[0], self.model.cfg.loss, absent_owner)
        return {name: getattr(terms, name) for name in LOSS_TERMS}
