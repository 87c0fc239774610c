r"""Precompute the categories of every caption, so training does not parse captions on the fly.

Examples:
    python training/extract_categories.py --format jsonl --input data/train.jsonl --output data/train.cat.jsonl
    python training/extract_categories.py --format coco --input annotations/captions_train2017.json \
        --output annotations/captions_train2017.cat.json
    python training/extract_categories.py --format webdataset --input "cc12m/{00000..01242}.tar" \
        --output cc12m_categories/    # then set data.categories_dir: cc12m_categories

All categories are stored; K (data.categories.max_categories) is applied when training loads them.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence, get_args

from synseg_core.config import ConfigError
from synseg_core.data.categories import Backend, CategoryConfig, CategoryExtractor
from synseg_core.data.precompute import PrecomputeFormat, precompute_categories


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", required=True, choices=get_args(PrecomputeFormat), help="dataset format")
    p.add_argument("--input", required=True, help="JSONL manifest, COCO captions JSON, or shard pattern/folder/URLs")
    p.add_argument("--output", required=True,
                   help="manifest copy (jsonl), JSON copy (coco), or sidecar folder (webdataset)")
    p.add_argument("--backend", default="auto", choices=get_args(Backend),
                   help="spaCy noun chunks, the offline lexicon matcher, or auto (spaCy when installed)")
    p.add_argument("--spacy-model", default=CategoryConfig.spacy_model, help="spaCy pipeline name")
    p.add_argument("--keep-modifiers", action="store_true",
                   help="keep colour/adjective modifiers ('blue square' rather than 'square')")
    p.add_argument("--extra-vocabulary", nargs="*", default=[], help="further visual-noun files for the lexicon")
    p.add_argument("--extra-stop-words", nargs="*", default=[], help="further words that are never categories")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        extractor = CategoryExtractor(CategoryConfig(
            backend=args.backend, spacy_model=args.spacy_model, keep_modifiers=args.keep_modifiers,
            extra_vocabulary=tuple(args.extra_vocabulary), extra_stop_words=tuple(args.extra_stop_words)))
        stats = precompute_categories(args.format, args.input, args.output, extractor,
                                      progress=not args.no_progress)
    except (ConfigError, ValueError, OSError, ImportError) as exc:  # bad input: say why, no traceback
        print(f"extract_categories: error: {exc}", file=sys.stderr)
        return 2
    print(f"extract_categories ({extractor.backend}): {stats.summary()}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
