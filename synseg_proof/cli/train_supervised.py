r"""Train the decoder and FiLM with per-pixel masks (stage 2 of the proof, or the supervised ceiling): BCE on
(image, category) pairs of a segmentation split, present and absent categories, CLIP frozen. Resumable.

Examples (from the repository root, after the chain wrote its model config and data):
    python -m synseg_proof.cli.train_supervised --model-config runs/proof/stage1/model_config.json \
        --split runs/proof/data/source_masks --out runs/proof/stage2 schedule.max_steps=500 optim.lr=2e-3
    python -m synseg_proof.cli.train_supervised ... --stop-at 200      # then the same command again to resume

Writes OUT/model/ (a synseg checkpoint) and OUT/clipseg_decoder.safetensors (the decoder as a CLIPSeg state dict,
what `model.clipseg_weights` of a training config reads). Exit status: 0 done, 2 bad settings or data.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Sequence

from synseg_core.model.checkpoint import CheckpointError
from synseg_core.config import ConfigError, load_config_file
from synseg_proof.supervised import CLIPSEG_FILE, SupervisedConfig, train_supervised
from synseg_core.training.overrides import apply_overrides


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-config", required=True, help="the model-config JSON (CLIP + decoder architecture)")
    p.add_argument("--split", required=True, help="a segmentation split (synseg_proof/cli/make_dataset.py)")
    p.add_argument("--out", required=True, help="run folder (resumes from its newest checkpoint)")
    p.add_argument("--stop-at", type=int, metavar="STEP", help="checkpoint and stop after this step")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="SupervisedConfig overrides, e.g. batch_size=16 optim.lr=1e-3 schedule.max_steps=300")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = SupervisedConfig.from_dict(apply_overrides(dataclasses.asdict(SupervisedConfig()), args.overrides))
        final = train_supervised(load_config_file(args.model_config), args.split, args.out, cfg,
                                 progress=not args.no_progress, stop_at=args.stop_at)
    except (ConfigError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if final is None:
        print(f"stopped at step {args.stop_at}; run the same command again to resume")
    else:
        print(f"done: checkpoint {final}, CLIPSeg state dict {final.parent / CLIPSEG_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
