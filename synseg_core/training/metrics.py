"""Training metrics: one JSON object per line in `<output_dir>/metrics.jsonl`, written by rank 0.

Record types (the `type` field): "train" (loss terms averaged over the last `logging.every` steps, learning
rates, gradient norm, throughput, memory), "eval" (what the evaluation hook returned), "best" (a new best
validation score), "nonfinite" (a skipped step), "empty_batch", "summary" (end of training: steps, non-finite
steps, skipped samples, wall time). This file is the source of truth; TensorBoard gets a copy of the scalars.
"""
from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import psutil
import torch

from ..outputs import OutputError, atomic_write_text, os_reason

METRICS_NAME = "metrics.jsonl"


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so the file stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLogger:
    """Appends records to a JSONL file (flushed per record, so a crash loses nothing already logged)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, record_type: str, step: int, **values: Any) -> dict:
        record = {"type": record_type, "step": step, "time": round(time.time(), 3),
                  **{k: _clean(v) for k, v in values.items()}}
        append_line(self.path, json.dumps(record))
        return record

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after `step` (written after the checkpoint a run resumes from)."""
        truncate_jsonl(self.path, step)


def append_line(path: Path, line: str) -> None:
    """Append one line (flushed when the file closes).

    Raises:
        OutputError: the file cannot be written (full disk, read-only file system, ...).
    """
    try:
        with path.open("a") as f:
            f.write(line + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {os_reason(exc)}") from exc


def memory_usage(device: torch.device) -> dict[str, float]:
    """Memory of this process in MiB: on CUDA the peak allocated by torch since the last call, on the CPU the
    resident set size."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
        return {"cuda_peak_allocated_mb": peak}
    return {"rss_mb": psutil.Process().memory_info().rss / 2**20}


def truncate_jsonl(path: Path, step: int) -> None:
    """Keep only the records of a JSONL file whose "step" is at most `step` (atomically); no file, nothing to do."""
    if path.is_file():
        kept = [json.dumps(r) for r in read_metrics(path) if int(r.get("step", 0)) <= step]
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def read_metrics(path: str | Path) -> Iterator[dict]:
    """Records of a metrics file; a line that is not a JSON object (a torn write) is skipped."""
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


class WindowAverage:
    """Means of named values over the steps since the last `pop()`."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self._sums[k] += v
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def pop(self) -> dict[str, float]:
        means = {k: v / self._count for k, v in self._sums.items()} if self._count else {}
        self._sums.clear()
        self._count = 0
        return means


def progress_postfix(record: dict) -> dict[str, str]:
    """The progress bar's summary of a "train" record: the main loss terms and images per second."""
    shown = {k: record[k] for k in ("total", "align", "cont", "back", "sep") if k in record}
    return {**{k: f"{v:.3f}" for k, v in shown.items()}, "img/s": f"{record['images_per_s']:.1f}"}
