"""Precompute every sample's categories once, so training does not parse captions on the fly.

* JSONL manifest -> a copy with ``"categories"`` on every line (relative image paths made absolute when the
  copy lives in another folder);
* COCO-captions JSON -> a copy with ``"categories"`` on every annotation;
* webdataset shards -> a folder of per-shard sidecars ``<shard>.jsonl`` with ``{"key", "categories"}`` lines
  (give it to the dataset as ``categories_dir``).

All candidates are stored (no K limit): the dataset applies K when it loads them, so the random selection can
still vary per epoch. Samples without categories are stored with an empty list and counted; the datasets skip
them as ``no_categories``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from tqdm import tqdm

from ..outputs import atomic_file
from .categories import CategoryExtractor
from .records import IMAGE_EXTENSIONS, check_file, read_coco_captions, shard_record
from .samples import CaptionRecord
from .shards import expand_shards, read_shard, sidecar_path

PrecomputeFormat = Literal["jsonl", "coco", "webdataset"]


@dataclass
class PrecomputeStats:
    """What a precomputation saw.

    Attributes:
        samples: records read.
        without_categories: records whose caption gave no category (training will skip them).
        bad_records: records or shards that could not be read (copied unchanged / left out).
    """

    samples: int = 0
    without_categories: int = 0
    bad_records: int = 0

    def summary(self) -> str:
        return (f"{self.samples} samples, {self.samples - self.without_categories} with categories, "
                f"{self.without_categories} without (skipped in training), {self.bad_records} unreadable")


def _categories(extractor: CategoryExtractor, caption: object, stats: PrecomputeStats) -> list[str]:
    stats.samples += 1
    found = extractor.candidates(caption) if isinstance(caption, str) else []
    stats.without_categories += not found
    return found


def _precompute_jsonl(source: Path, output: Path, extractor: CategoryExtractor, progress: bool) -> PrecomputeStats:
    stats = PrecomputeStats()
    absolute = source.parent.resolve() != output.parent.resolve()  # keep relative image paths valid
    lines = source.read_text(encoding="utf-8").splitlines()
    with atomic_file(output) as tmp, tmp.open("w", encoding="utf-8") as out:
        for line in tqdm(lines, desc=f"categories {source.name}", unit="sample", disable=not progress):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict) or not isinstance(data.get("image"), str):
                    raise ValueError(line)
            except ValueError:
                stats.bad_records += 1  # copied unchanged: the dataset counts it as bad_record
                out.write(line + "\n")
                continue
            data["categories"] = _categories(extractor, data.get("caption"), stats)
            if absolute:
                data["image"] = str((source.parent / data["image"]).resolve())
            out.write(json.dumps(data, ensure_ascii=False) + "\n")
    return stats


def _precompute_coco(source: Path, output: Path, extractor: CategoryExtractor, progress: bool) -> PrecomputeStats:
    stats = PrecomputeStats()
    data = read_coco_captions(source)
    for annotation in tqdm(data["annotations"], desc=f"categories {source.name}", unit="caption",
                           disable=not progress):
        if isinstance(annotation, dict):
            annotation["categories"] = _categories(extractor, annotation.get("caption"), stats)
        else:
            stats.bad_records += 1
    with atomic_file(output) as tmp, tmp.open("w", encoding="utf-8") as out:
        json.dump(data, out, ensure_ascii=False)
    return stats


def _is_text_member(name: str) -> bool:
    return name.rsplit(".", 1)[-1].lower() not in IMAGE_EXTENSIONS  # skip image bytes: only captions are needed


def _precompute_shards(source: str, output: Path, extractor: CategoryExtractor, progress: bool) -> PrecomputeStats:
    stats = PrecomputeStats()
    with tqdm(desc="categories", unit="sample", disable=not progress) as bar:
        for n, url in enumerate(expand_shards(source)):
            bar.set_postfix(shard=f"{n + 1}", refresh=False)
            with atomic_file(sidecar_path(output, url)) as tmp, tmp.open("w", encoding="utf-8") as out:
                for sample in read_shard(url, select_files=_is_text_member):
                    record = shard_record(sample, None) if "__key__" in sample else None
                    if not isinstance(record, CaptionRecord):
                        stats.bad_records += 1
                        continue
                    found = _categories(extractor, record.caption, stats)
                    out.write(json.dumps({"key": record.key, "categories": found}, ensure_ascii=False) + "\n")
                    bar.update()
    return stats


def precompute_categories(data_format: PrecomputeFormat, source: str | Path, output: str | Path,
                          extractor: CategoryExtractor, progress: bool = True) -> PrecomputeStats:
    """Extract every sample's categories and write them next to the data (see the module docstring).

    Args:
        data_format: "jsonl", "coco" or "webdataset".
        source: the manifest, the COCO captions JSON, or the shards (pattern, folder, URLs).
        output: the manifest copy / JSON copy, or the sidecar folder for shards.
        extractor: the category extractor (its backend and keep_modifiers decide the names).
        progress: show a tqdm progress bar.

    Raises:
        ValueError: unknown format, output equal to the source, or an empty dataset.
        FileNotFoundError: missing source.
    """
    output = Path(output)
    if data_format == "jsonl":
        source = check_file(source, "caption manifest")
        if output.resolve() == source.resolve():
            raise ValueError(f"output {output} would overwrite the manifest being read; choose another path")
        return _precompute_jsonl(source, output, extractor, progress)
    if data_format == "coco":
        source = check_file(source, "COCO captions file")
        if output.resolve() == source.resolve():
            raise ValueError(f"output {output} would overwrite the captions file being read; choose another path")
        return _precompute_coco(source, output, extractor, progress)
    if data_format == "webdataset":
        return _precompute_shards(str(source), output, extractor, progress)
    raise ValueError(f"unknown data format {data_format!r}; valid formats: {list(get_args(PrecomputeFormat))}")
