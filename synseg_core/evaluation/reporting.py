"""Evaluation outputs: a results JSON, a readable markdown table and a qualitative PNG grid, named by checkpoint,
dataset, method and protocol (`output_stem`) and written atomically."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from synseg_core.evaluation.evaluator import EvalSettings, EvaluationReport, QualitativeSample
from synseg_core.evaluation.metrics import DEFAULT_IGNORE_INDEX
from synseg_core.evaluation.provenance import checkpoint_label
from synseg_core.outputs import atomic_write, atomic_write_text

PANEL_HEIGHT = 240  # pixels per row of the qualitative grid
PANEL_GAP = 4  # white pixels between panels and rows (black is the VOC background colour)
PALETTE_SIZE = 256
PERCENT = 100.0


def color_palette(size: int = PALETTE_SIZE) -> np.ndarray:
    """The PASCAL VOC colour map (bit-interleaved class ids): [size, 3] uint8; 0 is black, 255 is off-white."""
    ids = np.arange(size)
    palette = np.zeros((size, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            palette[:, channel] |= ((ids >> (3 * shift + channel)) & 1) << (7 - shift)
    return palette.astype(np.uint8)


def colorize(label: np.ndarray, ignore_index: int = DEFAULT_IGNORE_INDEX) -> np.ndarray:
    """Class ids [H, W] -> RGB [H, W, 3] uint8 (ids wrap around the palette; ignore gets the VOC void colour)."""
    palette = color_palette()
    ids = np.where(label == ignore_index, PALETTE_SIZE - 1, np.mod(label, PALETTE_SIZE - 1))
    return palette[ids]


def _panel(array: np.ndarray, height: int, resample: Image.Resampling) -> np.ndarray:
    """Resize to ``height`` (aspect kept) and add the gap on the right and bottom."""
    h, w = array.shape[:2]
    width = max(1, round(w * height / h))
    resized = np.asarray(Image.fromarray(array).resize((width, height), resample))
    return np.pad(resized, ((0, PANEL_GAP), (0, PANEL_GAP), (0, 0)), constant_values=255)


def qualitative_grid(samples: list[QualitativeSample], panel_height: int = PANEL_HEIGHT) -> np.ndarray:
    """Rows of image | ground truth | prediction, each panel scaled to ``panel_height``: [H, W, 3] uint8."""
    if not samples:
        raise ValueError("no samples to draw")
    rows = []
    for s in samples:
        panels = [
            _panel(s.image, panel_height, Image.Resampling.BILINEAR),
            _panel(colorize(s.ground_truth), panel_height, Image.Resampling.NEAREST),
            _panel(colorize(s.prediction), panel_height, Image.Resampling.NEAREST),
        ]
        rows.append(np.concatenate(panels, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def report_to_dict(report: EvaluationReport) -> dict[str, Any]:
    """JSON-ready results: scores as fractions in [0, 1], absent classes as null, and every setting."""
    m = report.metrics
    return {
        "dataset": report.settings.dataset,
        "checkpoint": report.settings.checkpoint,
        "method": report.settings.method,
        "pamr": report.settings.pamr,
        "num_images": report.num_images,
        "num_pixels": m.num_pixels,
        "miou": _number(m.miou),
        "pixel_accuracy": _number(m.pixel_accuracy),
        "per_class_iou": {c: _number(v) for c, v in zip(report.classes, m.per_class_iou)},
        "classes": list(report.classes),
        "background_first": report.background_first,
        "settings": dataclasses.asdict(report.settings),
        "inference": dataclasses.asdict(report.inference),
        "run": report.run,
        "checkpoint_provenance": report.provenance,
    }


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{PERCENT * value:.2f}"


def markdown_table(report: EvaluationReport) -> str:
    """A readable summary: headline scores, the settings, and IoU per class (n/a = absent from GT and prediction)."""
    s, inf, m = report.settings, report.inference, report.metrics
    window = "whole image" if inf.window is None else f"{inf.window} (stride {inf.stride})"
    lines = [
        f"# {s.dataset}: {s.method}{' + PAMR' if s.pamr else ''}",
        "",
        "| dataset | method | PAMR | images | mIoU (%) | pixel acc. (%) |",
        "|---|---|---|---|---|---|",
        f"| {s.dataset} | {s.method} | {'on' if s.pamr else 'off'} | {report.num_images} | {_percent(m.miou)} "
        f"| {_percent(m.pixel_accuracy)} |",
        "",
        f"checkpoint `{s.checkpoint}`, protocol `{s.protocol}`: short side {inf.short_side}, window {window}, "
        f"templates `{inf.templates}`, background "
        + (f"threshold {inf.background_threshold}" if inf.background else "none (every pixel gets a class)"),
        "",
        "| class | IoU (%) |",
        "|---|---|",
        *(f"| {c.strip()} | {_percent(v)} |" for c, v in zip(report.classes, m.per_class_iou)),
    ]
    return "\n".join(lines) + "\n"


def output_stem(settings: EvalSettings) -> str:
    """File stem of a run's outputs: checkpoint label, dataset, method, protocol, and ``pamr`` when on."""
    s = settings
    return f"{checkpoint_label(s.checkpoint)}_{s.dataset}_{s.method}_{s.protocol}" + ("_pamr" if s.pamr else "")


def output_paths(settings: EvalSettings, out_dir: str | Path) -> dict[str, Path]:
    """Where `write_report` puts a run's results, table and grid (the grid only when there are samples)."""
    out, stem = Path(out_dir), output_stem(settings)
    return {"json": out / f"{stem}.json", "table": out / f"{stem}.md", "grid": out / f"{stem}_samples.png"}


def write_report(report: EvaluationReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and (when there are samples) ``<stem>_samples.png`` into ``out_dir``,
    each atomically (an existing file is replaced whole).

    Raises:
        OutputError: a file cannot be written.
    """
    paths = output_paths(report.settings, out_dir)
    atomic_write_text(paths["json"], json.dumps(report_to_dict(report), indent=2) + "\n")
    atomic_write_text(paths["table"], markdown_table(report))
    if not report.samples:
        del paths["grid"]
        return paths
    grid = Image.fromarray(qualitative_grid(report.samples))
    atomic_write(paths["grid"], lambda tmp: grid.save(tmp, format="PNG"))
    return paths
