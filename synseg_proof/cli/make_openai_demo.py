r"""Prepare the demo's --openai mode (needs internet): open_clip ViT-B/16 with `openai` weights + the CLIPSeg decoder
(CIDAS/clipseg-rd64-refined) as a synseg checkpoint, a few real photos and the node parameters. scripts/demo.sh
--openai runs this, then the node on the photos.

Examples:
    python -m synseg_proof.cli.make_openai_demo --out runs/demo_openai/assets
    python -m synseg_proof.cli.make_openai_demo --out /tmp/a --model-config tiny-test --clipseg clipseg.safetensors \
        --photos-dir my_photos --query "cup, table"        # offline, e.g. with random-weight models

Writes OUT/model/ (config.json + model.safetensors), OUT/frames/ (images/ + query.txt), OUT/node_params.yaml.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from synseg_core.model.checkpoint import CheckpointError
from synseg_core.config import ConfigError
from synseg_proof.demo_assets import NODE_PARAMS_FILE, write_node_params
from synseg_proof.openai_demo import (DEFAULT_CLIPSEG, DEFAULT_PHOTOS, DEFAULT_QUERY, build_clipseg_checkpoint,
                                           collect_photos)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="assets folder")
    p.add_argument("--model-config", default="vitb16-rd64-refined", help="bundled model config (or .json path)")
    p.add_argument("--clipseg", default=DEFAULT_CLIPSEG, help="CLIPSeg weights: a hub id or a local file")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--photos", nargs="+", default=list(DEFAULT_PHOTOS), help="photo URLs to download")
    src.add_argument("--photos-dir", help="a local folder of .jpg/.png photos instead of URLs")
    p.add_argument("--query", default=", ".join(DEFAULT_QUERY), help="categories, comma-separated")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    query = [c.strip() for c in args.query.split(",") if c.strip()]
    try:
        model = build_clipseg_checkpoint(args.model_config, args.clipseg, out / "model")
        frames = collect_photos(out / "frames", args.photos if not args.photos_dir else (), args.photos_dir, query)
        params = write_node_params(out / NODE_PARAMS_FILE, model)
    except (OSError, ValueError, ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"model {model}, photos {frames}, node parameters {params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
