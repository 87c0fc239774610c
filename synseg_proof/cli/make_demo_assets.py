r"""Regenerate the bundled demo: the demo model (the proof's best caption-trained checkpoint on the VALIDATION split,
float16 weights, with the inference size and background threshold that score best on the validation split) and
the sample frame sequence with its ground truth, plus the node parameters scripts/demo.sh uses.

Example (after `python -m synseg_proof.cli.run_chain --out runs/proof`):
    python -m synseg_proof.cli.make_demo_assets --chain runs/proof
    python -m synseg_proof.cli.make_demo_assets --frames-only --frames 12        # only the frames

Writes synseg_core/resources/demo/model/ (config.json + model.safetensors), .../frames/ (images/, labels/,
classes.txt, query.txt) and .../node_params.yaml.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

from synseg_core.model.checkpoint import CheckpointError, read_checkpoint_config
from synseg_proof.demo_assets import (DEFAULT_QUERY, DEMO_DIR, NODE_PARAMS_FILE, choose_inference,
                                           export_demo_model, write_demo_frames, write_node_params)
from synseg_proof.report import RESULTS_JSON

DEFAULT_FRAMES = 12
DEFAULT_SEED = 2024  # distinct from every split seed of the chain (800-804)
DEFAULT_SCALES = (1.0, 1.5, 2.0)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chain", default="runs/proof", help="a finished proof chain folder (its report/results.json)")
    p.add_argument("--demo-dir", default=str(DEMO_DIR), help="where the demo assets go")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames in the sample sequence")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="scene seed of the frames")
    p.add_argument("--query", default=", ".join(DEFAULT_QUERY), help="the frames' categories, comma-separated")
    p.add_argument("--frames-only", action="store_true", help="keep the model; rewrite only the frames")
    p.add_argument("--scales", type=float, nargs="+", default=list(DEFAULT_SCALES),
                   help="inference sizes tried on the validation split, as multiples of the train size")
    return p.parse_args(argv)


def best_caption_row(results: dict) -> dict:
    """The caption-trained row with the highest validation mIoU (the held-out numbers play no part)."""
    trained = [r for r in results["rows"] if r.get("train_command") and r.get("val_miou") is not None]
    if not trained:
        raise ValueError("the chain's results hold no scored caption-trained row yet; let the chain finish")
    return max(trained, key=lambda r: r["val_miou"])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    demo = Path(args.demo_dir)
    model_dir = demo / "model"
    try:
        if not args.frames_only:
            results = json.loads((Path(args.chain) / "report" / RESULTS_JSON).read_text())
            row = best_caption_row(results)
            provenance = {"recipe": row["label"], "row": row["row_id"], "seed": row["seed"], "step": row["step"],
                          "train_command": row["train_command"], "val_miou": row["val_miou"],
                          "test_miou": row["test"]["miou"], "source_checkpoint": row["checkpoint"]}
            inference = choose_inference(row["checkpoint"], Path(args.chain) / "data" / "target_val", args.scales,
                                         results["config"]["eval"]["thresholds"])
            provenance["inference"] = inference
            if model_dir.exists():
                shutil.rmtree(model_dir)
            export_demo_model(row["checkpoint"], model_dir, inference["short_side"], inference["threshold"], provenance)
            print(f"demo model: {row['label']} (seed {row['seed']}, step {row['step']}), validation mIoU "
                  f"{100 * row['val_miou']:.1f}; inference at {inference['short_side']} px, background threshold "
                  f"{inference['threshold']} (validation mIoU {100 * inference['val_miou']:.1f}, foreground IoU "
                  f"{100 * inference['val_foreground_iou']:.1f}) -> {model_dir}")
        model_config, _ = read_checkpoint_config(model_dir)
        query = [c.strip() for c in args.query.split(",") if c.strip()]
        frames = demo / "frames"
        if frames.exists():
            shutil.rmtree(frames)
        write_demo_frames(frames, query, args.frames, model_config.preprocess.train_size, args.seed)
        params = write_node_params(demo / NODE_PARAMS_FILE, model_dir)
    except (OSError, ValueError, KeyError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"frames: {args.frames} x {model_config.preprocess.train_size} px, query {', '.join(query)} -> {frames}")
    print(f"node parameters: {params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
