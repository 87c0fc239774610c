"""The optimisation engine every training loop shares (MCCL training, and the proof's mask-supervised and stage-1
CLIP loops): AdamW over parameter groups, the warm-up + cosine schedule, autocast with the gradient scaler that
fp16 needs, gradient clipping, and the optimiser / schedule / scaler state that a checkpoint carries.

A loop owns its model, data and loss; per step it runs the forward under `engine.autocast()`, hands the loss to
`engine.apply`, and calls `engine.scheduler.step()` once (skipped steps included, so the schedule follows the step
count). `state_dict()` goes into the checkpoint's trainer state; `load_state_dict` restores it on resume.
"""
from __future__ import annotations

import math
from typing import ContextManager

import torch
from torch import nn

from .config import OptimConfig, ScheduleConfig
from .optim import build_optimizer, build_scheduler
from .precision import MixedPrecision


class TrainingEngine:
    """Optimiser, schedule and mixed precision for the trainable parameters in `named`.

    Args:
        named: parameter name -> parameter (those without requires_grad are left out).
        optim: AdamW settings and gradient clipping.
        schedule: warm-up + cosine schedule.
        precision: autocast dtype and gradient scaler.
        part: how the parameter groups are named in logs (see `optim.parameter_groups`).
    """

    def __init__(self, named: dict[str, nn.Parameter], optim: OptimConfig, schedule: ScheduleConfig,
                 precision: MixedPrecision, part: str = "decoder"):
        self.optimizer = build_optimizer(named, optim, part)
        self.scheduler = build_scheduler(self.optimizer, schedule)
        self.precision = precision
        self.max_grad_norm = optim.grad_clip_norm or math.inf
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]

    def autocast(self) -> ContextManager:
        """The forward's autocast context (a no-op in fp32)."""
        return self.precision.autocast()

    def apply(self, loss: torch.Tensor) -> tuple[float, bool]:
        """Backpropagate `loss`, clip the gradients and step the optimiser; the gradients are cleared after.

        Returns:
            (gradient norm before clipping, whether the weights were updated). Without a gradient scaler a
            non-finite norm leaves the weights alone; with fp16 the scaler skips such a step itself, lowers its
            scale and the norm comes back infinite.
        """
        scaler = self.precision.scaler
        scaler.scale(loss).backward()
        scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm, foreach=True))
        applied = math.isfinite(grad_norm) or scaler.is_enabled()
        if applied:
            scaler.step(self.optimizer)
            scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm, applied

    def lr(self) -> float:
        """The current learning rate of the first parameter group."""
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        """Optimiser, schedule and scaler state (tensors and plain containers) for a trainer state."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.precision.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` wrote (a trainer state holding those keys)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.precision.scaler.load_state_dict(state["scaler"])

