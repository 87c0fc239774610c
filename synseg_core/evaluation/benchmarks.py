"""Benchmark descriptions (class lists, mmseg on-disk layouts, protocol notes) shipped as data files.

The JSON files in ``synseg_core/resources/benchmarks/`` are the single source of truth; this module is the one
loader for them. Descriptive notes in the files (how a dataset was converted, where a list comes from) are kept
as free text but every functional field is parsed strictly, so a typo in a data file fails loudly. Prompt
templates live with the model (``synseg_core/resources/templates.json``, ``synseg_core.model.backbone.get_templates``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

BENCHMARK_DIR = Path(__file__).resolve().parent.parent / "resources" / "benchmarks"

# Free-text keys allowed next to the functional fields; anything else is an error.
_LAYOUT_NOTE_KEYS = frozenset(
    {"data_root", "label_values", "conversion", "mmseg_dataset_type", "val_images_note", "name_quirk"}
)
_SPEC_NOTE_KEYS = frozenset({"name", "sclip_names", "source", "protocol"})


@dataclass(frozen=True)
class DatasetLayout:
    """Where an mmseg-style dataset keeps its files, relative to the dataset root.

    Attributes:
        img_dir: image folder.
        ann_dir: label-map folder.
        split: text file listing the sample names (one per line), or None to scan ``img_dir`` recursively.
        img_suffix: file-name ending of images (e.g. ``.jpg`` or ``_leftImg8bit.png``).
        seg_map_suffix: file-name ending of label maps.
        reduce_zero_label: stored 0 becomes ignore and every other value k becomes k-1 (mmseg rule).
        ignore_index: label value excluded from every metric.
        notes: free-text description fields of the data file (conversion, label values, ...).
    """

    img_dir: str
    ann_dir: str
    split: str | None
    img_suffix: str
    seg_map_suffix: str
    reduce_zero_label: bool
    ignore_index: int
    notes: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class BenchmarkSpec:
    """One evaluation dataset: its classes and layout.

    Attributes:
        key: short name used on the command line (``voc21``).
        title: human-readable name.
        classes: class names in label order; ``classes[0]`` is ``background`` when ``background_first``.
        background_first: class 0 is an explicit background class (scored by the background threshold).
        layout: on-disk layout.
        protocol: per-protocol reference settings from the data file (free text, for the record).
    """

    key: str
    title: str
    classes: tuple[str, ...]
    background_first: bool
    layout: DatasetLayout
    protocol: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def num_classes(self) -> int:
        """Number of classes scored, background included."""
        return len(self.classes)


def list_benchmarks() -> list[str]:
    """Names of the shipped benchmark datasets, sorted."""
    return sorted(p.stem for p in BENCHMARK_DIR.glob("*.json"))


def _split_known(data: dict[str, Any], required: tuple[str, ...], notes: frozenset[str], where: str) -> dict:
    unknown = sorted(set(data) - set(required) - notes)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; valid keys are {sorted(set(required) | notes)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")
    return {k: v for k, v in data.items() if k in notes}


def _parse_layout(data: dict[str, Any], where: str) -> DatasetLayout:
    required = ("img_dir", "ann_dir", "split", "img_suffix", "seg_map_suffix", "reduce_zero_label", "ignore_index")
    notes = _split_known(data, required, _LAYOUT_NOTE_KEYS, f"{where} layout")
    return DatasetLayout(**{k: data[k] for k in required}, notes=notes)


@lru_cache(maxsize=None)
def load_benchmark(name: str) -> BenchmarkSpec:
    """Load one benchmark description.

    Args:
        name: one of :func:`list_benchmarks` (e.g. ``voc21``, ``context59``).

    Raises:
        ValueError: the name is unknown (the message lists the valid names) or the data file is malformed.
    """
    valid = list_benchmarks()
    if name not in valid:
        raise ValueError(f"unknown benchmark dataset {name!r}; valid names are {valid}")
    path = BENCHMARK_DIR / f"{name}.json"
    data = json.loads(path.read_text())
    required = ("num_classes", "classes", "background_first", "layout")
    _split_known(data, required, _SPEC_NOTE_KEYS, str(path))
    classes = tuple(data["classes"])
    if len(classes) != data["num_classes"]:
        raise ValueError(f"{path}: num_classes={data['num_classes']} but {len(classes)} class names are listed")
    return BenchmarkSpec(
        key=name,
        title=data.get("name", name),
        classes=classes,
        background_first=bool(data["background_first"]),
        layout=_parse_layout(data["layout"], str(path)),
        protocol=data.get("protocol", {}),
    )
