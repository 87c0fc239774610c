"""The training loop: MCCL on caption batches, AdamW on the trainable parameters, resumable to the exact step.

One `Trainer.fit()` call runs from the current step to `schedule.max_steps`. Each step: text embeddings from the
frozen text tower (cached per category string), the frozen image tower and the decoder under autocast, MCCL,
backward through the trainable parameters only, gradient clipping, AdamW, the lr schedule. A step whose loss
(or, without a gradient scaler, whose gradient norm) is not finite on any rank is skipped on every rank, logged
and counted; a checkpoint that falls due on such a step waits for the next good one, and the run stops after
`runtime.max_consecutive_nonfinite` bad steps in a row, leaving the last good checkpoint in place. A run whose
data is unusable (no usable sample, or more skipped than `runtime.max_skip_ratio`) stops the same way. Every
`eval.every` steps the evaluation hook scores the model; the best score's weights are kept in `checkpoints/best/`.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..data import CaptionBatch, CaptionLoader
from ..model.checkpoint import load_checkpoint
from ..model.synseg import SynSeg
from .absent import absent_inputs
from .batches import BatchStream, DataPosition
from .best import BestCheckpoint
from .config import TrainConfig
from .distributed import DistInfo, all_ranks_true, on_main_rank
from .metrics import WindowAverage, memory_usage, progress_postfix
from .engine import TrainingEngine
from .precision import MixedPrecision, resolve_precision
from .records import RunRecords, TrainingError, TrainSummary
from .state import (capture_rng, changed_config_keys, load_resumable, load_trainer_state, restore_rng,
                    save_training_checkpoint)
from .step import LOSS_TERMS, MCCLStep, StepOutcome
from .text import ChunkedTextCache
from .validation import EvalOutcome, describe_hook, outcome_of

log = logging.getLogger(__name__)

EvalHook = Callable[[SynSeg], "Mapping[str, float] | EvalOutcome"]


class Trainer:
    """Trains `model` on the batches of `loader` as `cfg` says.

    Args:
        cfg: the training config.
        model: the SynSeg model, already initialised (it is moved to `device`).
        loader: this rank's caption batches.
        device: where the steps run.
        info: rank and world size (DDP when world_size > 1; the process group must be initialised).
        evaluate: called with the model (eval mode, no grad) every `eval.every` steps on rank 0; returns metrics
            (or an `EvalOutcome` with images); `eval.best_metric` among them picks the best checkpoint.
        provenance: the code's provenance (git state, package versions), stored in every checkpoint.
    """

    def __init__(self, cfg: TrainConfig, model: SynSeg, loader: CaptionLoader, *, device: torch.device,
                 info: DistInfo = DistInfo(), evaluate: EvalHook | None = None,
                 provenance: Mapping[str, Any] | None = None):
        self.cfg, self.device, self.info, self.evaluate = cfg, device, info, evaluate
        self.provenance = {"code": dict(provenance)} if provenance else {}
        self.model = model.to(device).train()
        self.params = list(self.model.trainable_parameters().values())
        self.engine = TrainingEngine(self.model.trainable_parameters(), cfg.optim, cfg.schedule,
                                     MixedPrecision(resolve_precision(cfg.runtime.precision, device), device))
        self.optimizer, self.scheduler, self.precision = (self.engine.optimizer, self.engine.scheduler,
                                                          self.engine.precision)
        if cfg.runtime.cast_frozen_clip:
            self.model.backbone.clip.visual.to(self.precision.dtype)
        step_module = MCCLStep(self.model)
        self.step_module: nn.Module = step_module if not info.distributed else DistributedDataParallel(
            step_module, device_ids=[device] if device.type == "cuda" else None)
        self.text = ChunkedTextCache(self.model.backbone, cfg.text.templates, cfg.text.chunk, cfg.text.cache_size)
        self.batches = BatchStream(loader)
        self.step = 0
        self.records = RunRecords(cfg, info, device)
        self.last_checkpoint: Path | None = None  # known on rank 0 only
        self.saved_step = -1  # the same on every rank, so all take the same branches around collectives
        self.output_dir = Path(cfg.output_dir)
        self.best = (BestCheckpoint(self.output_dir, cfg.eval.best_metric, describe_hook(evaluate))
                     if info.is_main and evaluate is not None else None)

    def trainer_state(self) -> dict:
        """Everything besides the weights that a resumed run needs (plain containers and tensors only)."""
        return {
            "step": self.step,
            **self.engine.state_dict(),
            "rng": capture_rng(),
            "data": self.batches.position.as_dict(),
            "counters": self.records.counters(),
            "config": self.cfg.to_dict(),
        }

    def resume(self, folder: str | Path | None = None) -> Path:
        """Restore weights and trainer state from `folder` (default: the newest checkpoint in output_dir that loads;
        newer ones that do not are moved aside with a warning naming them and why).

        The continuation is exact with the same config, number of ranks, batch size and DataLoader workers (the
        data position counts this rank's batches). Config differences are logged; the lr schedule follows the
        new config, the optimiser's base learning rates come from the checkpoint.

        Raises:
            CheckpointError: no checkpoint (or `folder`) loads.
        """
        if folder is None:
            folder, state = load_resumable(self.output_dir, self.model)
        else:
            folder = Path(folder)
            state = load_trainer_state(folder)
            load_checkpoint(folder, self.model)
        self.engine.load_state_dict(state)
        restore_rng(state["rng"])
        self.step = state["step"]
        self.batches.position = DataPosition(**state["data"])
        self.records.restore(state["counters"], self.step)
        changed = changed_config_keys(state["config"], self.cfg.to_dict())
        if changed:
            log.warning("resuming with a config that differs from the checkpoint's in: %s", ", ".join(changed))
        self.last_checkpoint, self.saved_step = folder, self.step
        log.info("resumed from %s at step %d (epoch %d, batch %d)", folder, self.step,
                 self.batches.position.epoch, self.batches.position.batches)
        return folder

    def train_step(self, batch: CaptionBatch) -> StepOutcome:
        """One optimisation step on `batch` (skipped on every rank when any rank has no image or a bad loss)."""
        n_images = len(batch)
        if not all_ranks_true(n_images > 0, self.device):
            return StepOutcome("empty")
        batch = batch.to(self.device, non_blocking=True)
        # The frozen text tower runs in fp32 outside autocast: its embeddings are cached (computed once per
        # category), and autocast over its frozen attention weights is slower than fp32 on CPUs.
        text = self.text(batch.categories)
        absent_text, absent_owner = (None, None) if self.model.cfg.loss.absent_weight <= 0 else absent_inputs(
            batch, self.cfg.absent.per_image, (self.cfg.seed, self.info.rank, self.step), self.text)
        with self.precision.autocast():
            terms = self.step_module(batch.images, text, batch.owner, absent_text, absent_owner)
        losses = dict(zip(terms, torch.stack([v.detach().float() for v in terms.values()]).tolist()))
        if not all_ranks_true(math.isfinite(losses["total"]), self.device):
            return StepOutcome("nonfinite", losses, images=n_images)
        # A bad gradient (identical on every rank after DDP's all-reduce) is a skipped step; with fp16 the scaler
        # skips overflowing steps itself and lowers its scale.
        grad_norm, applied = self.engine.apply(terms["total"])
        return StepOutcome("ok" if applied else "nonfinite", losses, grad_norm, n_images)

    def fit(self, stop_at: int | None = None) -> TrainSummary:
        """Train until `schedule.max_steps` (or `stop_at`, if earlier); returns the summary (also logged).

        Raises:
            TrainingError: too many non-finite steps in a row, non-finite weights, or unusable data (`DataError`),
                after logging a summary.
            OutputError: a checkpoint or log could not be written (earlier checkpoints are intact).
        """
        started = time.perf_counter()
        bar = tqdm(total=self.cfg.schedule.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   desc="train", disable=not (self.info.is_main and self.cfg.logging.progress_bar))
        end = min(self.cfg.schedule.max_steps, stop_at if stop_at is not None else math.inf)
        try:
            with bar:
                self._loop(bar, int(end))
            if self.saved_step != self.step:
                self.save_checkpoint()
            if self.cfg.eval.every and self.step % self.cfg.eval.every:
                self.run_evaluation()
        except TrainingError:
            self.records.summary(self.step, time.perf_counter() - started, True, self.last_checkpoint)
            raise
        return self.records.summary(self.step, time.perf_counter() - started, False, self.last_checkpoint)

    def _loop(self, bar: tqdm, end: int) -> None:
        cfg = self.cfg
        window, window_images, window_start = WindowAverage(), 0, time.perf_counter()
        checkpoint_due = False
        batches = iter(self.batches)
        while self.step < end:
            batch = next(batches)
            self.records.add_batch(self.step + 1, batch)
            outcome = self.train_step(batch)
            self.scheduler.step()
            self.step += 1
            self.records.account(self.step, outcome, self.last_checkpoint)
            if outcome.status == "ok":  # (an fp16 overflow step the scaler skipped has an infinite norm)
                norm = {"grad_norm": outcome.grad_norm} if math.isfinite(outcome.grad_norm) else {}
                window.add({**outcome.losses, **norm})
            window_images += outcome.images
            bar.update(1)
            if self.step % cfg.logging.every == 0 or self.step == end:
                record = self._log_window(window, window_images, time.perf_counter() - window_start)
                bar.set_postfix(progress_postfix(record), refresh=False)
                window_images, window_start = 0, time.perf_counter()
            checkpoint_due |= self.step % cfg.checkpoint.every == 0
            if checkpoint_due and outcome.status == "ok":
                self.save_checkpoint()
                checkpoint_due = False
            if cfg.eval.every and self.step % cfg.eval.every == 0:
                self.run_evaluation()

    def _log_window(self, window: WindowAverage, images: int, seconds: float) -> dict:
        """Average the window over ranks and write a "train" record (rank 0); returns the record.

        Raises:
            DataError: the data read so far is unusable (see `RunRecords.check_data`).
        """
        names = ["grad_norm", *LOSS_TERMS]
        means = window.pop()
        local = [means.get(k, 0.0) for k in names] if means else [0.0] * len(names)
        # Good steps are skipped on all ranks together, so every rank has the same window length.
        totals = self.records.sync(also=[*local, float(images)])
        record = {k: v / self.info.world_size for k, v in zip(names, totals)} if means else {}
        record.update({
            **{f"lr_{g['name'].removesuffix('_no_decay')}": g["lr"] for g in self.optimizer.param_groups},
            "images_per_s": totals[-1] / max(seconds, 1e-9),
            **memory_usage(self.device),
            "epoch": self.batches.position.epoch,
            "samples": self.records.samples,
            "skipped": self.records.skipped.total,
            "nonfinite_steps": self.records.nonfinite_steps,
        })
        if self.precision.scaler.is_enabled():
            record["grad_scale"] = float(self.precision.scaler.get_scale())
        if self.records.log is not None:
            self.records.log.log("train", self.step, **record)
        self.records.check_data(self.step)
        return record

    def save_checkpoint(self) -> Path | None:
        """Write a training checkpoint of the current step (rank 0); never one with non-finite weights or of a run
        whose data is unusable.

        Raises:
            TrainingError / DataError: non-finite weights, or unusable data.
            OutputError: the checkpoint cannot be written (earlier ones are intact).
        """
        self.records.sync()
        self.records.check_data(self.step)
        if not all(torch.isfinite(p).all() for p in self.params):
            raise TrainingError(f"step {self.step}: trainable weights are not finite; no checkpoint written "
                                f"(the last good one is {self.last_checkpoint})")

        def write() -> None:
            self.last_checkpoint = save_training_checkpoint(self.output_dir, self.step, self.model,
                                                            self.trainer_state(), self.cfg.checkpoint.keep_last,
                                                            self.provenance)
            log.info("step %d: checkpoint %s", self.step, self.last_checkpoint)

        on_main_rank(write, self.info, self.device)
        self.saved_step = self.step
        return self.last_checkpoint

    def run_evaluation(self) -> dict[str, float]:
        """Call the evaluation hook on rank 0, log what it returns, and keep a new best in `checkpoints/best/`.

        The hook runs in eval mode, without grad and inside the training autocast context (with
        `runtime.cast_frozen_clip` the frozen image tower is stored in bf16/fp16, so fp32 calls would mix dtypes).
        """
        outcome: EvalOutcome | None = None
        if self.info.is_main and self.evaluate is not None:
            self.model.eval()
            try:
                with torch.no_grad(), self.precision.autocast():
                    outcome = outcome_of(self.evaluate(self.model))
            finally:
                self.model.train()
            log.info("step %d: evaluation %s", self.step, outcome.metrics)
        on_main_rank(lambda: self._record_evaluation(outcome), self.info, self.device)  # (also a barrier)
        return outcome.metrics if outcome is not None else {}

    def _record_evaluation(self, outcome: EvalOutcome | None) -> None:
        if outcome is None:
            return
        log_ = self.records.log
        log_.log("eval", self.step, **outcome.metrics)
        for tag, image in outcome.images.items():
            log_.image(tag, self.step, image)
        if self.best.update(self.step, outcome.metrics, self.model, self.provenance):
            log_.log("best", self.step, metric=self.best.metric, score=self.best.score)
