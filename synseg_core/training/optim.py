"""AdamW over the trainable parameters, with a linear warm-up + cosine schedule (docs/method.md §7)."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .config import OptimConfig, ScheduleConfig

PROJECTOR_PREFIX = "synergy."  # the FSS projector is new (not in CLIPSeg), so it gets its own learning rate


def parameter_groups(named: dict[str, nn.Parameter], cfg: OptimConfig, part: str = "decoder") -> list[dict]:
    """Up to four AdamW groups: {`part`, projector} x {decayed weights, biases and norm weights (no decay)}.

    Biases, normalisation weights and learned scalars are the 0-d/1-d tensors, so `ndim <= 1` is the rule (as in
    timm/open_clip). Parameters named `synergy.*` (the FSS projector) get `projector_lr`, the rest `lr`. Empty
    groups are left out. Each group carries a `name` for logging: `part` (e.g. "decoder" for SynSeg's decoder and
    FiLM, "clip" for a whole CLIP), "projector", with "_no_decay" for the undecayed ones.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in named.items():
        if param.requires_grad:
            groups.setdefault((name.startswith(PROJECTOR_PREFIX), param.ndim > 1), []).append(param)
    out = []
    for (is_projector, decays), params in sorted(groups.items()):
        out.append({
            "name": f"{'projector' if is_projector else part}{'' if decays else '_no_decay'}",
            "params": params,
            "lr": cfg.projector_lr if is_projector else cfg.lr,
            "weight_decay": cfg.weight_decay if decays else 0.0,
        })
    return out


def build_optimizer(named: dict[str, nn.Parameter], cfg: OptimConfig, part: str = "decoder") -> torch.optim.AdamW:
    """AdamW over `named` (e.g. `model.trainable_parameters()`); parameters that do not require grad are left out.
    `part` names the groups (see `parameter_groups`)."""
    groups = parameter_groups(named, cfg, part)
    if not groups:
        raise ValueError("no trainable parameters: every parameter has requires_grad=False")
    # The fused kernel (CPU and CUDA) runs one pass over all tensors instead of ~6 ops per tensor.
    return torch.optim.AdamW(groups, betas=tuple(cfg.betas), eps=cfg.eps, fused=True)


def warmup_cosine(base_lr: float, schedule: ScheduleConfig) -> Callable[[int], float]:
    """Multiplier of a group's base lr at a step: linear warm-up to 1 over `warmup_steps` (the first step already
    gets 1/warmup_steps), then cosine down to `min_lr / base_lr` at `max_steps`.

    A plain function on purpose: LambdaLR does not store functions in its state_dict, so on `--resume` the
    schedule follows the (possibly extended) config rather than the checkpoint.
    """
    floor = schedule.min_lr / base_lr
    decay_steps = max(1, schedule.max_steps - schedule.warmup_steps)

    def multiplier(step: int) -> float:
        if step < schedule.warmup_steps:
            return (step + 1) / schedule.warmup_steps
        progress = min(1.0, (step - schedule.warmup_steps) / decay_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-group warm-up + cosine; call `.step()` once per training step."""
    lambdas = [warmup_cosine(group["lr"], schedule) for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
