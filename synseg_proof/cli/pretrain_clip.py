r"""Stage 1: pretrain the tiny CLIP contrastively on synthetic caption splits, export it and report its metrics.

Example (from the repository root; resumable: run the same command again after an interruption):
    python -m synseg_proof.cli.pretrain_clip --train runs/synthetic/pretrain --out runs/stage1 \
        --set steps=1200 --set threads=1

Writes OUT/clip.safetensors + OUT/clip_config.json (the open_clip model config), OUT/metrics.json (zero-shot
colour / shape / stuff accuracy per domain, retrieval recall), OUT/train_log.jsonl and OUT/trainer_state.pt
(the resumable checkpoint).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from synseg_core.config import ConfigError
from synseg_proof.synthetic.clip_model import FAST_OVERRIDES, ClipPretrainConfig, config_with_overrides
from synseg_proof.synthetic.clip_train import train_clip


def _override(text: str) -> tuple[str, Any]:
    """``key=value`` with a JSON value (``steps=100``, ``betas=[0.9,0.98]``); bare words are strings."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set expects key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", nargs="+", required=True, help="caption split folder(s) written by make_dataset.py")
    p.add_argument("--out", required=True, help="run folder (resumes when it holds a checkpoint)")
    p.add_argument("--config", help="JSON file of ClipPretrainConfig settings")
    p.add_argument("--set", dest="overrides", action="append", type=_override, default=[], metavar="KEY=VALUE",
                   help="override one setting (after --fast and --config); repeatable")
    p.add_argument("--fast", action="store_true", help="tiny model and few steps (tests, CI smoke runs)")
    p.add_argument("--stop-at", type=int, help="checkpoint and exit after this step (resume later with the same "
                   "command without --stop-at)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> ClipPretrainConfig:
    """Defaults, then --fast, then --config, then --set (later ones win); unknown keys are errors."""
    overrides: dict[str, Any] = dict(FAST_OVERRIDES) if args.fast else {}
    if args.config:
        try:
            overrides.update(json.loads(Path(args.config).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read --config {args.config}: {exc}") from exc
    overrides.update(dict(args.overrides))
    return config_with_overrides(ClipPretrainConfig(), overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = build_config(args)
    torch.set_num_threads(cfg.threads)
    result = train_clip(cfg, args.train, args.out, progress=not args.no_progress, stop_at=args.stop_at)
    metrics = result["metrics"]
    if metrics is None:
        print(f"stopped at step {result['history'][-1]['step'] if result['history'] else 0}; run again to resume")
        return 0
    template = metrics["primary_template"]
    for domain, per_template in metrics["zero_shot"].items():
        acc = per_template[template]
        print(f"zero-shot [{domain}, prompt {template!r}]: colour {acc['colour']:.3f} shape {acc['shape']:.3f} "
              f"thing {acc['thing']:.3f} stuff {acc['stuff']:.3f}")
    r = metrics["retrieval"]
    print(f"retrieval R@1: image->text {r['image_to_text_r1']:.3f} text->image {r['text_to_image_r1']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
