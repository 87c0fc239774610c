"""The run's skip report: every skipped training record, named (file and line, annotation or shard and key) with
its reason, one JSON object a line in `<output_dir>/skipped.jsonl` (`skipped.rank<N>.jsonl` for the other ranks of
a torchrun job); the first few also go to the log.

A resumed run drops the lines of steps after the checkpoint it resumes from (the same steps are read again).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable

from ..data import SkippedSample
from .metrics import append_line, truncate_jsonl

log = logging.getLogger(__name__)

SKIP_REPORT_NAME = "skipped.jsonl"
LOGGED_SKIPS = 10  # skipped records named in the log (per rank and session); the report has all of them


def skip_report_path(output_dir: str | Path, rank: int = 0) -> Path:
    """Rank 0's report is `skipped.jsonl`; rank N's is `skipped.rank<N>.jsonl`."""
    name = SKIP_REPORT_NAME if rank == 0 else f"skipped.rank{rank}.jsonl"
    return Path(output_dir) / name


class SkipReport:
    """Appends this rank's skipped records to its report file and names the first `LOGGED_SKIPS` in the log.

    Args:
        output_dir: the run folder.
        rank: this process's rank.
    """

    def __init__(self, output_dir: str | Path, rank: int = 0) -> None:
        self.path = skip_report_path(output_dir, rank)
        self.logged = 0
        self.first: list[str] = []  # descriptions of this session's first skipped records

    def add(self, step: int, skipped: Iterable[SkippedSample]) -> None:
        """Record the records skipped while making the batch of `step`."""
        lines = []
        for sample in skipped:
            lines.append(json.dumps({"step": step, "reason": sample.reason, "source": sample.source,
                                     "key": sample.key, "detail": sample.detail}))
            if self.logged < LOGGED_SKIPS:
                self.logged += 1
                self.first.append(sample.describe())
                log.warning("skipped %s%s", sample.describe(),
                            f" (only the first {LOGGED_SKIPS} are logged; all are in {self.path})"
                            if self.logged == LOGGED_SKIPS else "")
        if lines:
            append_line(self.path, "\n".join(lines))

    def truncate_after(self, step: int) -> None:
        """Drop the lines of steps after `step` (a resumed run reads those batches again)."""
        truncate_jsonl(self.path, step)
