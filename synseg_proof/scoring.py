"""Scores the proof reports beside mIoU: the all-background floor, foreground IoU, mIoU over a subset of classes
(the never-masked categories), and a background-threshold sweep that runs the model once per image.

All of them work on the evaluator's confusion matrices (`synseg_core.evaluation.metrics`), with the custom
dataset's convention that class 0 is background.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from synseg_core.evaluation.datasets import SegmentationDataset
from synseg_core.evaluation.demo_frames import foreground_iou
from synseg_core.evaluation.metrics import ConfusionMatrix, metrics_from_confusion
from synseg_core.inference.postprocess import labels_from_probabilities
from synseg_core.inference.segmenter import Segmenter

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


def threshold_sweep(segmenter: Segmenter, dataset: SegmentationDataset, thresholds: Sequence[float],
                    limit: int | None = None, progress: bool = False) -> dict[float, ConfusionMatrix]:
    """Confusion matrices of a background-first dataset for several background thresholds, from one forward pass
    per image (labels as the evaluator makes them: `labels_from_probabilities`).

    Raises:
        ValueError: the dataset has no background class, or no threshold is given.
    """
    if not dataset.background_first:
        raise ValueError("a background-threshold sweep needs a dataset whose first class is background")
    if not thresholds:
        raise ValueError("give at least one background threshold")
    categories = [c.strip() for c in dataset.classes[1:]]
    sweep = {float(t): ConfusionMatrix(len(dataset.classes), dataset.ignore_index) for t in thresholds}
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for index in tqdm(range(count), desc="threshold sweep", unit="img", disable=not progress):
        sample = dataset[index]
        probs = segmenter.segment_probabilities([sample.image], categories)[0]
        for threshold, confusion in sweep.items():
            labels = labels_from_probabilities(probs, threshold, segmenter.inference.mask_threshold).labels
            confusion.update(labels.cpu().numpy().astype(np.int64), sample.label)
    return sweep


def best_threshold(sweep: dict[float, ConfusionMatrix]) -> tuple[float, float]:
    """(threshold, mIoU) of the sweep's best mIoU; ties go to the threshold nearest 0.5, then the lower one."""
    scored = [(metrics_from_confusion(c.matrix).miou, t) for t, c in sweep.items()]
    scored = [(0.0 if np.isnan(m) else m, t) for m, t in scored]
    miou, threshold = max(scored, key=lambda mt: (mt[0], -abs(mt[1] - 0.5), -mt[1]))
    return threshold, float(miou)
