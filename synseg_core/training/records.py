"""A run's counters and records across ranks: samples used and skipped (with the skip report and the skip-ratio
limit), non-finite steps and empty batches, and rank 0's metrics log.

Counts of every rank are summed at each `sync()` (a collective: all ranks call it together), so every rank takes
the same decisions, e.g. to stop a run whose data is mostly unusable.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..data import CaptionBatch, SkipCounter
from .config import TrainConfig
from .distributed import DistInfo, all_reduce
from .run_log import RunLog
from .skip_report import SkipReport
from .step import StepOutcome

log = logging.getLogger(__name__)

FIRST_SKIPS_IN_ERRORS = 3  # skipped records named in the error that stops a run


class TrainingError(RuntimeError):
    """Training cannot go on (too many non-finite steps, or non-finite weights)."""


class DataError(TrainingError):
    """The training data is unusable: no usable sample, or more skipped than `runtime.max_skip_ratio` allows."""


@dataclass
class TrainSummary:
    """The end of a run (also written as the "summary" metrics record)."""

    steps: int
    nonfinite_steps: int
    empty_batches: int
    samples: int
    skipped: dict[str, int]
    last_checkpoint: str | None
    wall_s: float


class RunRecords:
    """Counters of one rank plus the totals of all ranks up to the last `sync()`.

    Args:
        cfg: the training config (output folder, limits, logging).
        info: rank and world size.
        device: where collectives run.
    """

    def __init__(self, cfg: TrainConfig, info: DistInfo, device: torch.device) -> None:
        self.cfg, self.info, self.device = cfg, info, device
        self.log = RunLog(cfg.output_dir, cfg.logging.tensorboard) if info.is_main else None
        self.skip_report = SkipReport(cfg.output_dir, info.rank)
        self.skipped = SkipCounter()  # all ranks' skips up to the last sync
        self.samples = 0  # all ranks' usable samples up to the last sync
        self._unsynced_skips = SkipCounter()  # this rank's since then
        self._unsynced_samples = 0
        self.nonfinite_steps = self.consecutive_nonfinite = self.empty_batches = 0

    def counters(self) -> dict:
        """What a checkpoint stores (rank 0's totals are the global ones after the sync before a save)."""
        return {"nonfinite_steps": self.nonfinite_steps, "consecutive_nonfinite": self.consecutive_nonfinite,
                "empty_batches": self.empty_batches, "skipped": self.skipped.as_dict(), "samples": self.samples}

    def restore(self, counters: dict, step: int) -> None:
        """Counters of a checkpoint at `step`; records written after it are dropped."""
        self.nonfinite_steps = counters["nonfinite_steps"]
        self.consecutive_nonfinite = counters["consecutive_nonfinite"]
        self.empty_batches = counters["empty_batches"]
        # Rank 0 carries the global totals; the other ranks start from zero so the all-reduced sums stay right.
        self.skipped = SkipCounter(counters["skipped"] if self.info.is_main else None)
        self.samples = counters.get("samples", 0) if self.info.is_main else 0
        self.skip_report.truncate_after(step)
        if self.log is not None:
            self.log.resumed_at(step)

    def add_batch(self, step: int, batch: CaptionBatch) -> None:
        """Count a batch's usable and skipped samples and report the skipped ones."""
        self._unsynced_skips.update(batch.skipped)
        self._unsynced_samples += len(batch)
        self.skip_report.add(step, batch.skipped_samples)

    def sync(self, also: Sequence[float] = ()) -> list[float]:
        """Add every rank's counts since the last sync into the totals (all ranks together).

        Args:
            also: more values to sum over the ranks in the same reduction (one collective per call).
        Returns:
            `also` summed over the ranks.
        """
        counts = [*self._unsynced_skips.to_tensor().tolist(), self._unsynced_samples]
        # float64 holds every count exactly (below 2**53)
        totals = all_reduce(torch.tensor([*counts, *also], dtype=torch.float64, device=self.device), "sum").tolist()
        self.skipped.update(SkipCounter.from_tensor(torch.tensor(totals[:len(counts) - 1])).as_dict())
        self.samples += int(totals[len(counts) - 1])
        self._unsynced_skips, self._unsynced_samples = SkipCounter(), 0
        return totals[len(counts):]

    def check_data(self, step: int) -> None:
        """Stop a run without a usable sample, or with more skipped than `runtime.max_skip_ratio` (after `sync`).

        Raises:
            DataError: with the counts, the first skipped records and the skip report's path.
        """
        read = self.samples + self.skipped.total
        limit = self.cfg.runtime.max_skip_ratio
        if not read or (self.samples and self.skipped.total / read <= limit):
            return
        what = ("no usable sample" if not self.samples
                else f"{self.skipped.total / read:.0%} of the samples skipped (runtime.max_skip_ratio={limit})")
        first = "; ".join(self.skip_report.first[:FIRST_SKIPS_IN_ERRORS]) or "none on this rank"
        raise DataError(f"step {step}: {what}: {self.skipped.summary()} of {read} read; first skipped: {first}; "
                        f"every skipped record is listed in {self.skip_report.path}. Stopping before another "
                        "checkpoint; check data.path and the images it names.")

    def account(self, step: int, outcome: StepOutcome, last_checkpoint: Path | None) -> None:
        """Count an empty or non-finite step (logged); stop after too many non-finite steps in a row.

        Raises:
            TrainingError: `runtime.max_consecutive_nonfinite` non-finite steps in a row.
        """
        if outcome.status == "empty":
            self.empty_batches += 1
            if self.log is not None:
                self.log.log("empty_batch", step)
            return
        if outcome.status == "ok":
            self.consecutive_nonfinite = 0
            return
        self.nonfinite_steps += 1
        self.consecutive_nonfinite += 1
        if self.log is not None:
            self.log.log("nonfinite", step, grad_norm=outcome.grad_norm, **outcome.losses)
        log.warning("step %d: non-finite loss or gradient on at least one rank (here: %s); step skipped on all "
                    "ranks (%d in a row)", step, outcome.losses, self.consecutive_nonfinite)
        if self.consecutive_nonfinite >= self.cfg.runtime.max_consecutive_nonfinite:
            raise TrainingError(
                f"{self.consecutive_nonfinite} non-finite steps in a row (the last at step {step}); stopping. "
                f"The last good checkpoint is {last_checkpoint or 'none (no checkpoint was written)'}. "
                "Lower the learning rate or use runtime.precision=fp32, then resume.")

    def summary(self, step: int, seconds: float, stopped: bool, last_checkpoint: Path | None) -> TrainSummary:
        """The run's summary, logged and written as the "summary" record."""
        summary = TrainSummary(steps=step, nonfinite_steps=self.nonfinite_steps, empty_batches=self.empty_batches,
                               samples=self.samples, skipped=self.skipped.as_dict(),
                               last_checkpoint=str(last_checkpoint) if last_checkpoint else None,
                               wall_s=round(seconds, 3))
        if self.log is not None:
            self.log.log("summary", step, stopped=stopped,
                         **{k: v for k, v in summary.__dict__.items() if k != "steps"})
        log.info("training %s at step %d: %d samples used, %s, %d non-finite steps, %d empty batches",
                 "stopped" if stopped else "finished", step, self.samples, self.skipped.summary(),
                 self.nonfinite_steps, self.empty_batches)
        return summary
