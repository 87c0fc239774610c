r"""Write a synthetic split: procedurally drawn shapes on stuff, with captions (and pixel labels for segmentation).

Examples (from the repository root):
    python -m synseg_proof.cli.make_dataset --out runs/synthetic/pretrain --kind captions \
        --domain source --domain target --count 60000 --seed 1
    python -m synseg_proof.cli.make_dataset --out runs/synthetic/target_test --kind segmentation \
        --domain target --count 500 --seed 7

Caption splits hold images/ + manifest.jsonl; segmentation splits add annotations/ + classes.txt (the
evaluation reader's ``custom`` layout). See synseg_proof/synthetic/writers.py for the formats.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from synseg_proof.synthetic import LABEL_MODES, SPLIT_KINDS, SceneGenerator, list_domains, write_split

DEFAULT_IMAGE_SIZE = 128


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="split folder to create (must not already hold a split)")
    p.add_argument("--kind", required=True, choices=SPLIT_KINDS, help="captions only, or captions + pixel labels")
    p.add_argument("--domain", action="append", choices=list_domains(),
                   help="scene distribution; repeat to mix (each image picks one uniformly); default: target")
    p.add_argument("--count", type=int, required=True, help="number of images")
    p.add_argument("--seed", type=int, required=True, help="base seed (use a different one for every split)")
    p.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="side of the square images")
    p.add_argument("--label-mode", choices=LABEL_MODES, default="all",
                   help="segmentation class list: all = things + stuff; things = background + things")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    generator = SceneGenerator(args.domain or ["target"], args.image_size, args.seed)
    out = write_split(args.out, generator, args.count, args.kind, args.label_mode, progress=not args.no_progress)
    print(f"wrote {args.count} {args.kind} images to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
