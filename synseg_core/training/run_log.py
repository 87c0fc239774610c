"""Rank 0's log of a run: `metrics.jsonl` (the source of truth) with a copy of its scalars, and the validation
prediction images, in TensorBoard event files beside it (`tensorboard --logdir <output_dir>`).

TensorBoard tags: `loss/<term>` (each MCCL term), `lr/<group>`, `train/<value>` (gradient norm, images per
second, memory, skipped samples, ...), `val/<metric>` and `val/predictions` (image | ground truth | prediction
rows). A resumed run purges the events after the step it resumes from, as `metrics.jsonl` drops those records.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError
from ..outputs import OutputError, os_reason
from .metrics import METRICS_NAME, MetricsLogger
from .step import LOSS_TERMS

log = logging.getLogger(__name__)

SCALAR_RECORDS = ("train", "eval")
NOT_SCALARS = ("type", "step", "time")


def tensorboard_tag(record_type: str, key: str) -> str:
    """The TensorBoard tag of a metrics value: 'loss/align', 'lr/decoder', 'train/images_per_s', 'val/miou'."""
    if record_type == "eval":
        return f"val/{key.removeprefix('val_')}"
    if key in LOSS_TERMS:
        return f"loss/{key}"
    if key.startswith("lr_"):
        return f"lr/{key.removeprefix('lr_')}"
    return f"train/{key}"


def _summary_writer(log_dir: Path, purge_step: int | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ConfigError("logging.tensorboard=true needs the tensorboard package (pip install -r "
                          "requirements/train.txt); or set logging.tensorboard=false") from exc
    try:
        return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
    except OSError as exc:
        raise OutputError(f"cannot write TensorBoard events into {log_dir}: {os_reason(exc)}") from exc


class RunLog:
    """Writes metrics records (and, with `tensorboard`, their scalars and images as TensorBoard events).

    Args:
        output_dir: the run folder.
        tensorboard: also write TensorBoard event files.
    """

    def __init__(self, output_dir: str | Path, tensorboard: bool) -> None:
        self.output_dir = Path(output_dir)
        self.metrics = MetricsLogger(self.output_dir / METRICS_NAME)
        self.tensorboard = tensorboard
        self._writer: Any = None
        self._purge_step: int | None = None

    def check(self) -> None:
        """Fail now (not at the first record) when TensorBoard logging is on but cannot work."""
        if self.tensorboard:
            self._board()

    def _board(self) -> Any:
        if self._writer is None:
            self._writer = _summary_writer(self.output_dir, self._purge_step)
        return self._writer

    def resumed_at(self, step: int) -> None:
        """Forget the records after `step`: metrics lines now, TensorBoard events when its next file opens."""
        self.metrics.truncate_after(step)
        if self._writer is not None:  # events of the steps after a resume point are in an earlier file
            self._writer.close()
            self._writer = None
        self._purge_step = step + 1

    def log(self, record_type: str, step: int, **values: Any) -> dict:
        """Append a metrics record; "train" and "eval" records also go to TensorBoard as scalars."""
        record = self.metrics.log(record_type, step, **values)
        if self.tensorboard and record_type in SCALAR_RECORDS:
            board = self._board()
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    board.add_scalar(tensorboard_tag(record_type, key), value, step)
            board.flush()
        return record

    def image(self, tag: str, step: int, image: np.ndarray) -> None:
        """A uint8 RGB image [H, W, 3] under `tag` (TensorBoard only)."""
        if self.tensorboard:
            board = self._board()
            board.add_image(tag, image, step, dataformats="HWC")
            board.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
