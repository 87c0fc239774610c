"""Readers for the caption formats' records: JSONL manifest lines, COCO-captions JSON, webdataset samples.

The datasets and the category precomputation (`precompute.py`) read records through these functions, so both
agree on what a valid record is.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from .samples import CaptionRecord
from .skips import SkippedSample

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
TEXT_EXTENSION = "txt"
JSON_EXTENSION = "json"


def check_file(path: str | Path, what: str) -> Path:
    """The path as a Path if it is an existing file.

    Raises:
        FileNotFoundError: naming `what` and the path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _categories_field(value: Any) -> list[str] | None:
    """A precomputed ``categories`` value: None when absent, a list of strings when valid.

    Raises:
        ValueError: any other value.
    """
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ValueError(f"'categories' must be a list of strings, got {value!r}")
    return [c for c in value if c.strip()]


def _caption_field(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"'caption' must be a string, got {value!r}")
    return value


def parse_manifest_line(line: str | bytes, key: str, root: Path) -> CaptionRecord | SkippedSample:
    """One JSONL manifest line ``{"image": path, "caption": str, "categories": [optional]}`` as a record.

    Args:
        line: the raw line.
        key: the record's key (its line number).
        root: folder that relative image paths resolve against (the manifest's folder).

    Returns:
        The record, or a ``bad_record`` marker for invalid JSON, a missing/non-string "image" or bad fields.
    """
    try:
        data = json.loads(line)
        if not isinstance(data, dict) or not isinstance(data.get("image"), str) or not data["image"]:
            raise ValueError(f"needs an object with a non-empty string 'image', got {str(line)[:200]!r}")
        return CaptionRecord(key, _caption_field(data.get("caption")), _categories_field(data.get("categories")),
                             root / data["image"])
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return SkippedSample("bad_record", key, str(exc))


def read_coco_captions(path: str | Path) -> dict:
    """Load a COCO-captions JSON and check its top-level layout.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, or no "annotations"/"images" lists, or no annotations at all.
    """
    path = check_file(path, "COCO captions file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"COCO captions file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("annotations", "images")):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"COCO captions file {path} needs 'annotations' and 'images' lists; found {found}")
    if not data["annotations"]:
        raise ValueError(f"COCO captions file {path} contains no annotations (an empty dataset)")
    return data


def coco_image_files(data: Mapping[str, Any]) -> dict[Any, str]:
    """image id -> file_name for the COCO images that have both."""
    return {img["id"]: img["file_name"] for img in data["images"]
            if isinstance(img, dict) and "id" in img and isinstance(img.get("file_name"), str)}


def coco_record(annotation: Any, index: int, files: Mapping[Any, str], root: Path) -> CaptionRecord | SkippedSample:
    """One COCO caption annotation (``image_id``, ``caption``, optional ``categories``) as a record."""
    key = str(annotation.get("id", index)) if isinstance(annotation, dict) else str(index)
    try:
        if not isinstance(annotation, dict) or annotation.get("image_id") not in files:
            raise ValueError(f"annotation {key} has no image_id that 'images' lists: {str(annotation)[:200]}")
        return CaptionRecord(key, _caption_field(annotation.get("caption")),
                             _categories_field(annotation.get("categories")), root / files[annotation["image_id"]])
    except ValueError as exc:
        return SkippedSample("bad_record", key, str(exc))


def shard_record(sample: Mapping[str, Any], sidecar: Mapping[str, list[str]] | None) -> CaptionRecord | SkippedSample:
    """An img2dataset webdataset sample (``.jpg`` + ``.txt`` and/or ``.json`` with "caption") as a record.

    Precomputed categories come from the sample's JSON "categories", else from the shard's sidecar.
    """
    key = sample["__key__"]
    try:
        meta = json.loads(sample[JSON_EXTENSION]) if JSON_EXTENSION in sample else {}
        if not isinstance(meta, dict):
            raise ValueError(f"sample {key}: .json must hold an object, got {str(meta)[:200]}")
        caption = (sample[TEXT_EXTENSION].decode("utf-8", errors="replace") if TEXT_EXTENSION in sample
                   else _caption_field(meta.get("caption")))
        categories = _categories_field(meta.get("categories"))
    except (ValueError, UnicodeDecodeError) as exc:
        return SkippedSample("bad_record", key, str(exc))
    if categories is None and sidecar is not None:
        categories = sidecar.get(key)
    image = next((sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample), None)
    return CaptionRecord(key, caption, categories, image)
