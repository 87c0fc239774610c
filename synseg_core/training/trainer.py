"""The training loop: MCCL on caption batches, AdamW on the trainable parameters, resumable to the exact step.

One `Trainer.fit()` call runs from the current step to `schedule.max_steps`. Each step: text embeddings from the
frozen text tower (cached per category string), the frozen image tower and the decoder under autocast, MCCL,
backward through the trainable parameters only, gradient clipping, AdamW, the lr schedule. A step whose loss
(or, without a gradient scaler, whose gradient norm) is not finite on any rank is skipped on every rank, logged
and counted; a checkpoint that falls due on such a step waits for the next good one, and the run stops after
`runtime.max_consecutive_nonfinite` bad steps in a row, leaving the last good checkpoint in place.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..model.checkpoint import load_checkpoint
from ..data import CaptionBatch, CaptionLoader, SkipCounter
from ..model.synseg import SynSeg
from .absent import absent_pairs
from .batches import BatchStream, DataPosition
from .config import TrainConfig
from .losses import synseg_loss
from .distributed import DistInfo, all_ranks_true, all_reduce, barrier
from .metrics import METRICS_NAME, MetricsLogger, WindowAverage
from .optim import build_optimizer, build_scheduler
from .precision import MixedPrecision, resolve_precision
from .state import capture_rng, latest_checkpoint, load_trainer_state, restore_rng, save_training_checkpoint
from .text import ChunkedTextCache

log = logging.getLogger(__name__)

EvalHook = Callable[[SynSeg], Mapping[str, float]]
LOSS_TERMS = ("total", "align", "cont", "back", "sep", "area", "absent")


class TrainingError(RuntimeError):
    """Training cannot go on (too many non-finite steps, or non-finite weights)."""


@dataclass
class StepOutcome:
    """What one step did: "ok" (weights updated), "nonfinite" (skipped) or "empty" (no usable image on a rank)."""

    status: Literal["ok", "nonfinite", "empty"]
    losses: dict[str, float] = field(default_factory=dict)
    grad_norm: float = math.nan
    images: int = 0


@dataclass
class TrainSummary:
    """The end of a run (also written as the "summary" metrics record)."""

    steps: int
    nonfinite_steps: int
    empty_batches: int
    skipped: dict[str, int]
    last_checkpoint: str | None
    wall_s: float


class _MCCLStep(nn.Module):
    """`forward` = `SynSeg.forward_train` + MCCL, returning the loss terms as a dict, so DistributedDataParallel
    (which only hooks `forward`) can wrap the training path."""

    def __init__(self, model: SynSeg):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, text: torch.Tensor, owner: torch.Tensor,
                absent_text: torch.Tensor | None, absent_owner: torch.Tensor | None) -> dict[str, torch.Tensor]:
        out = self.model.forward_train(images, text, owner, absent_text, absent_owner)
        terms = synseg_loss(out, text, owner, images.shape[0], self.model.cfg.loss, absent_owner)
        return {name: getattr(terms, name) for name in LOSS_TERMS}


class Trainer:
    """Trains `model` on the batches of `loader` as `cfg` says.

    Args:
        cfg: the training config.
        model: the SynSeg model, already initialised (it is moved to `device`).
        loader: this rank's caption batches.
        device: where the steps run.
        info: rank and world size (DDP when world_size > 1; the process group must be initialised).
        evaluate: called with the model (eval mode, no grad) every `eval.every` steps on rank 0; returns metrics.
    """

    def __init__(self, cfg: TrainConfig, model: SynSeg, loader: CaptionLoader, *, device: torch.device,
                 info: DistInfo = DistInfo(), evaluate: EvalHook | None = None):
        self.cfg, self.device, self.info, self.evaluate = cfg, device, info, evaluate
        self.model = model.to(device).train()
        self.params = list(self.model.trainable_parameters().values())
        self.precision = MixedPrecision(resolve_precision(cfg.runtime.precision, device), device)
        if cfg.runtime.cast_frozen_clip:
            self.model.backbone.clip.visual.to(self.precision.dtype)
        self.optimizer = build_optimizer(self.model.trainable_parameters(), cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule)
        step_module = _MCCLStep(self.model)
        self.step_module: nn.Module = step_module if not info.distributed else DistributedDataParallel(
            step_module, device_ids=[device] if device.type == "cuda" else None)
        self.text = ChunkedTextCache(self.model.backbone, cfg.text.templates, cfg.text.chunk, cfg.text.cache_size)
        self.batches = BatchStream(loader)
        self.step = 0
        self.nonfinite_steps = self.consecutive_nonfinite = self.empty_batches = 0
        self.skipped = SkipCounter()  # all ranks' skips up to the last sync
        self._unsynced_skips = SkipCounter()  # this rank's skips since then
        self.last_checkpoint: Path | None = None  # known on rank 0 only
        self.saved_step = -1  # the same on every rank, so all take the same branches around collectives
        self.output_dir = Path(cfg.output_dir)
        self.metrics = MetricsLogger(self.output_dir / METRICS_NAME) if info.is_main else None

    # ----------------------------------------------------------------------------------------------- state
    def trainer_state(self) -> dict:
        """Everything besides the weights that a resumed run needs (plain containers and tensors only)."""
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.precision.scaler.state_dict(),
            "rng": capture_rng(),
            "data": self.batches.position.as_dict(),
            "counters": {"nonfinite_steps": self.nonfinite_steps, "consecutive_nonfinite": self.consecutive_nonfinite,
                         "empty_batches": self.empty_batches, "skipped": self.skipped.as_dict()},
            "config": self.cfg.to_dict(),
        }

    def resume(self, folder: str | Path | None = None) -> Path:
        """Restore weights and trainer state from `folder` (default: the newest checkpoint in output_dir).

        The continuation is exact with the same config, number of ranks, batch size and DataLoader workers (the
        data position counts this rank's batches). Config differences are logged; the lr schedule follows the
        new config, the optimiser's base learning rates come from the checkpoint.
        """
        folder = Path(folder) if folder is not None else latest_checkpoint(self.output_dir)
        if folder is None:
            raise FileNotFoundError(f"no checkpoint to resume from in {self.output_dir / 'checkpoints'}")
        state = load_trainer_state(folder)
        load_checkpoint(folder, self.model)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.precision.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"])
        self.step = state["step"]
        self.batches.position = DataPosition(**state["data"])
        counters = state["counters"]
        self.nonfinite_steps, self.consecutive_nonfinite = counters["nonfinite_steps"], counters["consecutive_nonfinite"]
        self.empty_batches = counters["empty_batches"]
        # Rank 0 carries the global skip counts; the other ranks start from zero so the all-reduced sum stays right.
        self.skipped = SkipCounter(counters["skipped"] if self.info.is_main else None)
        changed = _changed_keys(state["config"], self.cfg.to_dict())
        if changed:
            log.warning("resuming with a config that differs from the checkpoint's in: %s", ", ".join(changed))
        if self.metrics is not None:
            self.metrics.truncate_after(self.step)
        self.last_checkpoint, self.saved_step = folder, self.step
        log.info("resumed from %s at step %d (epoch %d, batch %d)", folder, self.step,
                 self.batches.position.epoch, self.batches.position.batches)
        return folder

    # ------------------------------------------------------------------------------------------------ step
    def _absent_generator(self) -> torch.Generator:
        """Seeded by (seed, rank, step), so a resumed run draws the same absent pairs."""
        seed = int(np.random.SeedSequence([self.cfg.seed, self.info.rank, self.step]).generate_state(1)[0])
        return torch.Generator().manual_seed(seed)

    def _absent_inputs(self, batch: CaptionBatch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.model.cfg.loss.absent_weight <= 0:
            return None, None
        names, owner = absent_pairs(batch.categories, batch.owner, len(batch), self.cfg.absent.per_image,
                                    self._absent_generator())
        if not names:
            return None, None
        return self.text(names), owner

    def train_step(self, batch: CaptionBatch) -> StepOutcome:
        """One optimisation step on `batch` (skipped on every rank when any rank has no image or a bad loss)."""
        n_images = len(batch)
        if not all_ranks_true(n_images > 0, self.device):
            return StepOutcome("empty")
        batch = batch.to(self.device, non_blocking=True)
        # The frozen text tower runs in fp32 outside autocast: its embeddings are cached (computed once per
        # category), and autocast over its frozen attention weights is slower than fp32 on CPUs.
        text = self.text(batch.categories)
        absent_text, absent_owner = self._absent_inputs(batch)
        with self.precision.autocast():
            terms = self.step_module(batch.images, text, batch.owner, absent_text, absent_owner)
        losses = dict(zip(terms, torch.stack([v.detach().float() for v in terms.values()]).tolist()))
        if not all_ranks_true(math.isfinite(losses["total"]), self.device):
            return StepOutcome("nonfinite", losses, images=n_images)
        scaler = self.precision.scaler
        scaler.scale(terms["total"]).backward()
        scaler.unscale_(self.optimizer)
        max_norm = self.cfg.optim.grad_clip_norm or math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm, foreach=True))
        # With fp16 the scaler skips overflowing steps itself and lowers its scale; otherwise a bad gradient
        # (identical on every rank after DDP's all-reduce) is a skipped step.
        if not math.isfinite(grad_norm) and not scaler.is_enabled():
            self.optimizer.zero_grad(set_to_none=True)
            return StepOutcome("nonfinite", losses, grad_norm, n_images)
        scaler.step(self.optimizer)
        scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return StepOutcome("ok", losses, grad_norm, n_images)

    # ------------------------------------------------------------------------------------------------ loop
    def fit(self, stop_at: int | None = None) -> TrainSummary:
        """Train until `schedule.max_steps` (or `stop_at`, if earlier); returns the summary (also logged).

        Raises:
            TrainingError: too many non-finite steps in a row, or non-finite weights (after logging a summary).
        """
        started = time.perf_counter()
        bar = tqdm(total=self.cfg.schedule.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   desc="train", disable=not (self.info.is_main and self.cfg.logging.progress_bar))
        end = min(self.cfg.schedule.max_steps, stop_at if stop_at is not None else math.inf)
        try:
            with bar:
                self._loop(bar, int(end))
        except TrainingError:
            self._summary(time.perf_counter() - started, stopped=True)
            raise
        if self.saved_step != self.step:
            self.save_checkpoint()
        if self.cfg.eval.every and self.step % self.cfg.eval.every:
            self.run_evaluation()
        return self._summary(time.perf_counter() - started, stopped=False)

    def _loop(self, bar: tqdm, end: int) -> None:
        cfg = self.cfg
        window, window_images, window_start = WindowAverage(), 0, time.perf_counter()
        checkpoint_due = False
        batches = iter(self.batches)
        while self.step < end:
            batch = next(batches)
            self._unsynced_skips.update(batch.skipped)
            outcome = self.train_step(batch)
            self.scheduler.step()
            self.step += 1
            self._account(outcome)
            if outcome.status == "ok":  # (an fp16 overflow step the scaler skipped has an infinite norm)
                norm = {"grad_norm": outcome.grad_norm} if math.isfinite(outcome.grad_norm) else {}
                window.add({**outcome.losses, **norm})
            window_images += outcome.images
            bar.update(1)
            if self.step % cfg.logging.every == 0 or self.step == end:
                record = self._log_window(window, window_images, time.perf_counter() - window_start)
                bar.set_postfix(_postfix(record), refresh=False)
                window_images, window_start = 0, time.perf_counter()
            checkpoint_due |= self.step % cfg.checkpoint.every == 0
            if checkpoint_due and outcome.status == "ok":
                self.save_checkpoint()
                checkpoint_due = False
            if cfg.eval.every and self.step % cfg.eval.every == 0:
                self.run_evaluation()

    def _account(self, outcome: StepOutcome) -> None:
        if outcome.status == "empty":
            self.empty_batches += 1
            if self.metrics is not None:
                self.metrics.log("empty_batch", self.step)
            return
        if outcome.status == "ok":
            self.consecutive_nonfinite = 0
            return
        self.nonfinite_steps += 1
        self.consecutive_nonfinite += 1
        if self.metrics is not None:
            self.metrics.log("nonfinite", self.step, grad_norm=outcome.grad_norm, **outcome.losses)
        log.warning("step %d: non-finite loss or gradient on at least one rank (here: %s); step skipped on all "
                    "ranks (%d in a row)", self.step,
                    outcome.losses, self.consecutive_nonfinite)
        if self.consecutive_nonfinite >= self.cfg.runtime.max_consecutive_nonfinite:
            raise TrainingError(
                f"{self.consecutive_nonfinite} non-finite steps in a row (the last at step {self.step}); stopping. "
                f"The last good checkpoint is {self.last_checkpoint or 'none (no checkpoint was written)'}. "
                "Lower the learning rate or use runtime.precision=fp32, then resume.")

    def _sync_skips(self) -> None:
        """Add every rank's skips since the last sync into `self.skipped` (all ranks must call this together)."""
        counts = all_reduce(self._unsynced_skips.to_tensor().to(self.device), "sum").cpu()
        self.skipped.update(SkipCounter.from_tensor(counts).as_dict())
        self._unsynced_skips = SkipCounter()

    def _log_window(self, window: WindowAverage, images: int, seconds: float) -> dict:
        """Average the window over ranks and write a "train" record (rank 0); returns the record."""
        names = ["grad_norm", *LOSS_TERMS]
        means = window.pop()
        local = [means.get(k, 0.0) for k in names] if means else [0.0] * len(names)
        # Good steps are skipped on all ranks together, so every rank has the same window length.
        totals = all_reduce(torch.tensor([*local, float(images)], dtype=torch.float64, device=self.device)).tolist()
        self._sync_skips()
        record = {k: v / self.info.world_size for k, v in zip(names, totals)} if means else {}
        record.update({
            **{f"lr_{g['name'].removesuffix('_no_decay')}": g["lr"] for g in self.optimizer.param_groups},
            "images_per_s": totals[-1] / max(seconds, 1e-9),
            "epoch": self.batches.position.epoch,
            "skipped": self.skipped.total,
            "nonfinite_steps": self.nonfinite_steps,
        })
        if self.precision.scaler.is_enabled():
            record["grad_scale"] = float(self.precision.scaler.get_scale())
        if self.metrics is not None:
            self.metrics.log("train", self.step, **record)
        return record

    def save_checkpoint(self) -> Path | None:
        """Write a training checkpoint of the current step (rank 0); never one with non-finite weights."""
        self._sync_skips()
        if not all(torch.isfinite(p).all() for p in self.params):
            raise TrainingError(f"step {self.step}: trainable weights are not finite; no checkpoint written "
                                f"(the last good one is {self.last_checkpoint})")
        if self.info.is_main:
            self.last_checkpoint = save_training_checkpoint(self.output_dir, self.step, self.model,
                                                            self.trainer_state(), self.cfg.checkpoint.keep_last)
            log.info("step %d: checkpoint %s", self.step, self.last_checkpoint)
        self.saved_step = self.step
        return self.last_checkpoint

    def run_evaluation(self) -> dict[str, float]:
        """Call the evaluation hook on rank 0 and log what it returns.

        The hook runs in eval mode, without grad and inside the training autocast context (with
        `runtime.cast_frozen_clip` the frozen image tower is stored in bf16/fp16, so fp32 calls would mix dtypes).
        """
        metrics: dict[str, float] = {}
        if self.info.is_main and self.evaluate is not None:
            self.model.eval()
            try:
                with torch.no_grad(), self.precision.autocast():
                    metrics = {k: float(v) for k, v in self.evaluate(self.model).items()}
            finally:
                self.model.train()
            if self.metrics is not None:
                self.metrics.log("eval", self.step, **metrics)
            log.info("step %d: evaluation %s", self.step, metrics)
        barrier()
        return metrics

    def _summary(self, seconds: float, stopped: bool) -> TrainSummary:
        summary = TrainSummary(steps=self.step, nonfinite_steps=self.nonfinite_steps, empty_batches=self.empty_batches,
                               skipped=self.skipped.as_dict(),
                               last_checkpoint=str(self.last_checkpoint) if self.last_checkpoint else None,
                               wall_s=round(seconds, 3))
        if self.metrics is not None:
            self.metrics.log("summary", self.step, stopped=stopped,
                             **{k: v for k, v in summary.__dict__.items() if k != "steps"})
        log.info("training %s at step %d: %s, %d non-finite steps, %d empty batches",
                 "stopped" if stopped else "finished", self.step, self.skipped.summary(), self.nonfinite_steps,
                 self.empty_batches)
        return summary


def _postfix(record: dict) -> dict[str, str]:
    shown = {k: record[k] for k in ("total", "align", "cont", "back", "sep") if k in record}
    return {**{k: f"{v:.3f}" for k, v in shown.items()}, "img/s": f"{record['images_per_s']:.1f}"}


def _changed_keys(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changed += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
            changed.append(f"{prefix}{key}")
    return changed
