"""The bundled demo frames: read a frame folder (images, optional ground truth, the query) and score label maps.

Folder layout: ``images/<name>.png`` (RGB), ``labels/<name>.png`` (uint8 ids: 0 = background, k = the k-th query
category), ``classes.txt`` (background, then the query categories), ``query.txt`` (the query string).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..inference.query import parse_query
from .datasets import read_image, read_label
from .metrics import ConfusionMatrix

DEMO_DIR = Path(__file__).resolve().parent.parent / "resources" / "demo"
IMAGES, LABELS, QUERY_FILE, CLASSES_FILE = "images", "labels", "query.txt", "classes.txt"
BACKGROUND = "background"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PLAYBACK_SIZE = (640, 480)  # (width, height) the demo player publishes the frames at by default: a camera's


@dataclass
class DemoFrames:
    """A frame folder read back: names, RGB images [H, W, 3] uint8, labels [H, W] int64 (None without ground
    truth), the class list (background first) and the query categories."""

    names: list[str]
    images: list[np.ndarray]
    labels: list[np.ndarray] | None
    classes: list[str]
    query: list[str]


def read_demo_frames(folder: str | Path) -> DemoFrames:
    """Read a frame folder; `labels` and `classes.txt` are optional (real photos have no ground truth).

    Raises:
        ValueError: no images, or labels that do not match the images.
    """
    folder = Path(folder)
    paths = sorted(p for p in (folder / IMAGES).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{folder / IMAGES} holds no {'/'.join(IMAGE_SUFFIXES)} frames")
    label_paths = [folder / LABELS / f"{p.stem}.png" for p in paths]
    has_labels = all(p.is_file() for p in label_paths)
    query_file = folder / QUERY_FILE
    query = parse_query(query_file.read_text()) if query_file.is_file() else []
    classes_file = folder / CLASSES_FILE
    classes = classes_file.read_text().split("\n")[:-1] if classes_file.is_file() else [BACKGROUND, *query]
    images = [read_image(p) for p in paths]
    labels = [read_label(p) for p in label_paths] if has_labels else None
    if labels is not None and any(lab.shape != im.shape[:2] for lab, im in zip(labels, images)):
        raise ValueError(f"{folder / LABELS}: every label map must have its image's height and width")
    return DemoFrames([p.stem for p in paths], images, labels, classes, query)


def foreground_iou(matrix: np.ndarray) -> float:
    """IoU of "any non-background class" between ground truth and prediction, from a [K, K] confusion matrix."""
    fg_gt = matrix[1:, :].sum()
    fg_pred = matrix[:, 1:].sum()
    both = matrix[1:, 1:].sum()
    union = fg_gt + fg_pred - both
    return float(both / union) if union > 0 else float("nan")


def score_frames(predictions: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray], num_classes: int) -> dict:
    """Foreground IoU (any query category vs background) and mIoU of label maps over a frame sequence."""
    confusion = ConfusionMatrix(num_classes)
    for pred, gt in zip(predictions, ground_truth):
        confusion.update(np.asarray(pred).astype(np.int64), gt)
    metrics = confusion.compute()
    return {"foreground_iou": foreground_iou(confusion.matrix), "miou": metrics.miou,
            "frames": len(predictions)}
