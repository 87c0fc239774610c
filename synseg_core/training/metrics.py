"""Training metrics: one JSON object per line in `<output_dir>/metrics.jsonl`, written by rank 0.

Record types (the `type` field): "train" (loss terms averaged over the last `logging.every` steps, learning
rates, gradient norm, throughput), "eval" (what the evaluation hook returned), "nonfinite" (a skipped step),
"summary" (end of training: steps, non-finite steps, skipped samples, wall time).
"""
from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

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
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        return record

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after `step` (written after the checkpoint a run resumes from)."""
        if not self.path.is_file():
            return
        kept = [json.dumps(r) for r in read_metrics(self.path) if int(r.get("step", 0)) <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)


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
