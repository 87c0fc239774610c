"""Draw the loss curves (and learning rates, evaluation metrics) of a training run's metrics.jsonl to a PNG.

Example:
    python training/plot_metrics.py runs/cc12m_vitb16/metrics.jsonl --out runs/cc12m_vitb16/loss_curves.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from synseg_core.outputs import OutputError
from synseg_core.training import plot_metrics
from synseg_core.training.metrics import METRICS_NAME
from synseg_core.training.plot import PLOT_NAME


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metrics", help="a run's metrics.jsonl (or its output_dir)")
    p.add_argument("--out", help=f"PNG to write (default: {PLOT_NAME} next to the metrics)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    metrics = Path(args.metrics)
    if metrics.is_dir():
        metrics = metrics / METRICS_NAME
    try:
        out = plot_metrics(metrics, args.out or metrics.with_name(PLOT_NAME))
    except (FileNotFoundError, ValueError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
