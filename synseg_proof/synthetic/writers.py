"""Write generated scenes to disk, and read the caption manifests back.

Every split folder holds ``images/<stem>.png``, ``manifest.jsonl`` and ``split.json`` (how it was generated).
``manifest.jsonl`` has one JSON object per image: ``{"image": "images/<stem>.png", "caption": str,
"categories": [str, ...]}``. A caption split stops there: it carries no pixel ground truth.

A segmentation split adds the project's ``custom`` evaluation layout: ``annotations/<stem>.png`` (uint8 class ids,
255 = ignore) and ``classes.txt`` (one class name per line, in id order), and each manifest line gains
``"annotation": "annotations/<stem>.png"``. It serves both evaluation and stage-2 mask training (the binary mask
of category c in an image is ``annotation == classes.index(c)``). Class lists, by label mode:

* ``all`` (Context-like): every thing and stuff category of the split's domains, things first. The generator
  covers every pixel with a stuff region, so no background class is needed and none is listed.
* ``things`` (VOC-like): ``background`` first, then the thing categories; stuff pixels are background.

The generator draws no ambiguous pixels, so no label is 255; the value is reserved for the evaluation reader.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
from tqdm import tqdm

from .domains import DomainConfig
from .scene import Scene, SceneGenerator
from .vocabulary import all_stuff_categories, all_thing_categories

IMAGE_DIR = "images"
ANNOTATION_DIR = "annotations"
MANIFEST_FILE = "manifest.jsonl"
CLASSES_FILE = "classes.txt"
INFO_FILE = "split.json"
BACKGROUND = "background"
IGNORE_INDEX = 255
SplitKind = Literal["captions", "segmentation"]
LabelMode = Literal["all", "things"]
SPLIT_KINDS: tuple[str, ...] = ("captions", "segmentation")
LABEL_MODES: tuple[str, ...] = ("all", "things")
MANIFEST_KEYS = ("image", "caption", "categories")


def split_classes(domains: Sequence[DomainConfig], label_mode: LabelMode) -> list[str]:
    """Class list of a segmentation split over these domains, in class-id order.

    Raises:
        ValueError: unknown label mode.
    """
    if label_mode not in LABEL_MODES:
        raise ValueError(f"unknown label mode {label_mode!r}; valid modes are {list(LABEL_MODES)}")
    present = {c for d in domains for c in d.categories()}
    things = [t for t in all_thing_categories() if t in present]
    if label_mode == "things":
        return [BACKGROUND] + things
    return things + [s for s in all_stuff_categories() if s in present]


def class_ids(classes: Sequence[str], label_mode: LabelMode) -> dict[str, int]:
    """Category -> class id; in ``things`` mode every stuff category maps to the background id 0."""
    ids = {name: i for i, name in enumerate(classes)}
    if label_mode == "things":
        ids.update({s: 0 for s in all_stuff_categories()})
    return ids


def write_split(out_dir: str | Path, generator: SceneGenerator, count: int, kind: SplitKind,
                label_mode: LabelMode = "all", progress: bool = True) -> Path:
    """Generate scenes ``0..count-1`` and write them as one split.

    The manifest and ``split.json`` are written last (atomically), so a folder without them is an unfinished
    split.

    Args:
        out_dir: split folder (created; must not already hold a manifest).
        generator: scene source.
        count: number of images.
        kind: ``captions`` (images + captions only) or ``segmentation`` (adds annotations and classes.txt).
        label_mode: class list of a segmentation split (see the module docstring).
        progress: show a tqdm bar.

    Returns:
        the split folder.

    Raises:
        ValueError: bad kind, label mode or count, or the folder already holds a split.
    """
    if kind not in SPLIT_KINDS:
        raise ValueError(f"unknown split kind {kind!r}; valid kinds are {list(SPLIT_KINDS)}")
    if count < 1:
        raise ValueError(f"a split needs at least one image, got count={count}")
    out = Path(out_dir)
    if (out / MANIFEST_FILE).exists():
        raise ValueError(f"{out} already holds a split ({MANIFEST_FILE} exists); choose an empty folder")
    classes = split_classes(generator.domains, label_mode)
    ids = class_ids(classes, label_mode)
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    if kind == "segmentation":
        (out / ANNOTATION_DIR).mkdir(exist_ok=True)
    lines = []
    for index in tqdm(range(count), desc=f"writing {out.name}", disable=not progress, unit="img"):
        scene = generator.generate(index)
        lines.append(_write_scene(out, f"{index:06d}", scene, ids if kind == "segmentation" else None))
    if kind == "segmentation":
        _write_text(out / CLASSES_FILE, "".join(f"{c}\n" for c in classes))
    info = {
        "kind": kind, "count": count, "seed": generator.seed, "image_size": generator.image_size,
        "label_mode": label_mode if kind == "segmentation" else None,
        "classes": classes if kind == "segmentation" else None,
        "domains": [dataclasses.asdict(d) for d in generator.domains],
    }
    _write_text(out / INFO_FILE, json.dumps(info, indent=1) + "\n")
    _write_text(out / MANIFEST_FILE, "".join(json.dumps(line) + "\n" for line in lines))
    return out


def _write_scene(out: Path, stem: str, scene: Scene, ids: dict[str, int] | None) -> dict[str, Any]:
    image_rel = f"{IMAGE_DIR}/{stem}.png"
    _imwrite(out / image_rel, cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    line: dict[str, Any] = {"image": image_rel, "caption": scene.caption, "categories": scene.categories}
    if ids is not None:
        line["annotation"] = f"{ANNOTATION_DIR}/{stem}.png"
        _imwrite(out / line["annotation"], scene.label_map(ids))
    return line


def _imwrite(path: Path, array) -> None:
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}")


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_manifest(split_dir: str | Path) -> list[dict[str, Any]]:
    """Lines of a split's manifest, with ``image`` (and ``annotation``) resolved to absolute paths.

    Raises:
        ValueError: missing manifest, a line that is not JSON, lacks a key or names a missing file.
    """
    root = Path(split_dir)
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise ValueError(f"{root} has no {MANIFEST_FILE}; write one with synseg_proof/cli/make_dataset.py")
    records = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number} is not JSON: {exc}") from exc
        missing = [k for k in MANIFEST_KEYS if k not in record]
        if missing:
            raise ValueError(f"{path}:{number} lacks keys {missing}; each line needs {list(MANIFEST_KEYS)}")
        for key in ("image", "annotation"):
            if key in record:
                record[key] = str(root / record[key])
                if not Path(record[key]).is_file():
                    raise ValueError(f"{path}:{number}: {key} file {record[key]} does not exist")
        records.append(record)
    if not records:
        raise ValueError(f"{path} lists no images")
    return records
