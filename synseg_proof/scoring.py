"""Scores the proof reports beside mIoU: the all-background floor, foreground IoU, mIoU over a subset of classes
(the never-masked categories); the background-threshold sweep lives in `synseg_core.evaluation.sweep`.

All of them work on the evaluator's confusion matrices (`synseg_core.evaluation.metrics`), with the custom
dataset's convention that class 0 is background.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from synseg_core.evaluation.datasets import SegmentationDataset
from synseg_core.evaluation.demo_frames import foreground_iou
from synseg_core.evaluation.metrics import ConfusionMatrix, metrics_from_confusion
from synseg_core.evaluation.sweep import best_threshold, threshold_sweep

__all__ = ["background_floor", "best_threshold", "subset_miou", "summarise", "threshold_sweep"]

BACKGROUND_ID = 0


def background_floor(dataset: SegmentationDataset, limit: int | None = None) -> ConfusionMatrix:
    """The confusion matrix of predicting background (class 0) at every pixel."""
    confusion = ConfusionMatrix(len(dataset.classes), dataset.ignore_index)
    for index in range(len(dataset) if limit is None else min(limit, len(dataset))):
        label = dataset[index].label
        confusion.update(np.full_like(label, BACKGROUND_ID), label)
    return confusion


def subset_miou(per_class_iou: np.ndarray, classes: Sequence[str], subset: Sequence[str]) -> float:
    """Mean IoU over the classes in ``subset`` that have a defined IoU (NaN when none has).

    Raises:
        ValueError: a subset name is not a class.
    """
    unknown = [c for c in subset if c not in classes]
    if unknown:
        raise ValueError(f"classes {unknown} are not in the class list {list(classes)}")
    values = np.array([per_class_iou[list(classes).index(c)] for c in subset], dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def summarise(matrix: np.ndarray, classes: Sequence[str], never_masked: Sequence[str]) -> dict:
    """mIoU, never-masked mIoU, foreground IoU and per-class IoU of a confusion matrix (fractions, NaN -> None)."""
    metrics = metrics_from_confusion(matrix)

    def plain(value: float) -> float | None:
        return None if np.isnan(value) else float(value)

    return {
        "miou": plain(metrics.miou),
        "never_masked_miou": plain(subset_miou(metrics.per_class_iou, classes, never_masked)),
        "foreground_iou": plain(foreground_iou(matrix)),
        "pixel_accuracy": plain(metrics.pixel_accuracy),
        "per_class_iou": {c: plain(v) for c, v in zip(classes, metrics.per_class_iou)},
    }
