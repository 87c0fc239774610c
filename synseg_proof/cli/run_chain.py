r"""Run the proof-of-learning chain: stage-1 CLIP, stage-2 mask-trained decoder on the source domain,
stage-3 caption-only MCCL on the target domain, evaluation, results table and picture grid.

Examples (from the repository root; the full chain takes a while even with the bundled stage-1 CLIP, see
docs/proof_of_learning.md, so run it in the background):
    nohup .venv/bin/python -m synseg_proof.cli.run_chain --out runs/proof > runs/proof.log 2>&1 &
    .venv/bin/python -m synseg_proof.cli.run_chain --out runs/proof --resume     # after an interruption
    .venv/bin/python -m synseg_proof.cli.run_chain --fast --out runs/proof_fast  # CI: tiny everything, minutes

Writes OUT/report/results.md, results.json and grid.png (rewritten after every scored row, marked partial until
the end). Exit status: 0 done, 2 bad settings or an output folder that needs --resume.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Sequence

from synseg_core.model.checkpoint import CheckpointError
from synseg_core.config import ConfigError
from synseg_proof import ProofChain, fast_chain, full_chain


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/proof", help="output folder (default: runs/proof)")
    p.add_argument("--fast", action="store_true", help="tiny everything (CI); no claim about quality")
    p.add_argument("--resume", action="store_true", help="continue a chain in --out: finished steps are skipped")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1: the machines are shared)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()) and not args.resume:
        print(f"error: {out} already holds a chain; pass --resume to continue it, or choose another --out",
              file=sys.stderr)
        return 2
    try:
        cfg = fast_chain() if args.fast else full_chain()
        if args.threads is not None:
            cfg = dataclasses.replace(cfg, threads=args.threads)
        results = ProofChain(cfg, out, progress=not args.no_progress).run()
    except (ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"results: {out / 'report' / 'results.md'}")
    for row in results["rows"]:
        test = row["test"]
        print(f"  {row['row_id']:>22}: mIoU {100 * test['miou']:.1f}  never-masked "
              f"{100 * (test['never_masked_miou'] or 0):.1f}  foreground IoU {100 * (test['foreground_iou'] or 0):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
