"""The best validation score so far and its weights: `<output_dir>/checkpoints/best/`, beside the step
checkpoints, a normal synseg checkpoint (loadable by `Segmenter.from_checkpoint` and `training/evaluate.py`) plus
`best.json` with the step, the metric, its score, every validation metric and what the validation ran on.

A new best is written into a temporary folder and swapped in with renames (`outputs.atomic_write_dir`), so a crash
leaves the previous best or the new one, never a mix. A resumed run keeps the best-so-far (read back from
`best.json`) unless the validation it was scored on differs, in which case the next validation replaces it.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

from safetensors import SafetensorError

from ..model.checkpoint import save_checkpoint
from ..model.synseg import SynSeg
from ..outputs import OutputError, atomic_write_dir, atomic_write_text, os_reason, recover_dir
from .state import CHECKPOINT_DIR, CHECKPOINT_DIR_MODE

log = logging.getLogger(__name__)

BEST_DIR = "best"
BEST_INFO_NAME = "best.json"


def best_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / CHECKPOINT_DIR / BEST_DIR


def read_best_info(output_dir: str | Path) -> dict | None:
    """`best.json` of a run (None when the run has no readable best checkpoint)."""
    try:
        info = json.loads((best_dir(output_dir) / BEST_INFO_NAME).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


class BestCheckpoint:
    """Keeps `checkpoints/best/` at the highest `metric` seen (rank 0 only).

    Args:
        output_dir: the run folder.
        metric: the metric to maximise (a key of the validation metrics).
        validation: what the validation runs on (`Validation.describe()`); a stored best scored on something
            else is not compared with.
    """

    def __init__(self, output_dir: str | Path, metric: str, validation: Mapping[str, Any] | None) -> None:
        self.folder = best_dir(output_dir)
        self.metric = metric
        self.validation = dict(validation or {})
        self.step: int | None = None
        self.score: float | None = None
        recover_dir(self.folder)  # a replacement a crash interrupted is finished or undone
        info = read_best_info(output_dir)
        if info is None:
            return
        if info.get("metric") == metric and info.get("validation") == self.validation:
            self.step, self.score = int(info["step"]), float(info["score"])
            log.info("best so far: %s %.4f at step %d (%s)", metric, self.score, self.step, self.folder)
        else:
            log.warning("%s was scored by %s on %s; this run validates by %s on %s, so the next validation "
                        "replaces it", self.folder, info.get("metric"), info.get("validation"), metric,
                        self.validation)

    def update(self, step: int, metrics: Mapping[str, float], model: SynSeg, extra: Mapping[str, Any]) -> bool:
        """Write `model` as the new best if `metrics[metric]` beats the best so far; True when it did.

        Raises:
            OutputError: the folder cannot be written (the previous best stays).
        """
        score = metrics.get(self.metric)
        if score is None:
            log.warning("no best checkpoint kept: the evaluation returned no %r (eval.best_metric) but %s",
                        self.metric, sorted(metrics))
            return False
        if not math.isfinite(score) or (self.score is not None and score <= self.score):
            return False
        info = {"step": step, "metric": self.metric, "score": float(score), "metrics": dict(metrics),
                "validation": self.validation}

        def write(folder: Path) -> None:
            save_checkpoint(model, folder, extra={**extra, "step": step, "best": info})
            atomic_write_text(folder / BEST_INFO_NAME, json.dumps(info, indent=1) + "\n")

        try:
            atomic_write_dir(self.folder, write, CHECKPOINT_DIR_MODE)
        except (OSError, SafetensorError, OutputError) as exc:
            reason = os_reason(exc) if isinstance(exc, OSError) else str(exc)
            raise OutputError(f"step {step}: cannot write the best checkpoint {self.folder}: {reason}") from exc
        self.step, self.score = step, float(score)
        log.info("step %d: new best %s %.4f in %s", step, self.metric, self.score, self.folder)
        return True
