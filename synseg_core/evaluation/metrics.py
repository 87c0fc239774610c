"""Dataset-level segmentation metrics from one confusion matrix (mmseg semantics).

mmseg sums per-image intersections and unions over the whole dataset and then divides, so mIoU is a
dataset-level figure, not a mean of per-image mIoUs. A class that appears neither in the ground truth nor in
the prediction has union 0; its IoU is undefined (NaN) and it is left out of the mean.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_IGNORE_INDEX = 255


@dataclass(frozen=True)
class SegmentationMetrics:
    """Scores of a confusion matrix.

    Attributes:
        miou: mean IoU over classes with a defined IoU, in [0, 1] (NaN when no class has one).
        per_class_iou: IoU per class, shape [K], NaN where the class is absent from GT and prediction.
        pixel_accuracy: correctly labelled pixels / labelled pixels (mmseg ``aAcc``).
        num_pixels: labelled (non-ignored) pixels counted.
    """

    miou: float
    per_class_iou: np.ndarray
    pixel_accuracy: float
    num_pixels: int


class ConfusionMatrix:
    """Accumulates a ``[K, K]`` confusion matrix (rows = ground truth, columns = prediction) over a dataset.

    Args:
        num_classes: K, the number of scored classes (labels 0..K-1).
        ignore_index: ground-truth value excluded from counting.
    """

    def __init__(self, num_classes: int, ignore_index: int = DEFAULT_IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, prediction: np.ndarray, ground_truth: np.ndarray) -> None:
        """Add one image (or a batch of them).

        Args:
            prediction: predicted class ids, any integer shape, values in [0, K).
            ground_truth: class ids of the same shape, values in [0, K) or ``ignore_index``.

        Raises:
            ValueError: shapes differ, or a value is outside the allowed range (the message names it).
        """
        if prediction.shape != ground_truth.shape:
            raise ValueError(f"prediction shape {prediction.shape} != ground-truth shape {ground_truth.shape}")
        gt = ground_truth.astype(np.int64, copy=False).ravel()
        pred = prediction.astype(np.int64, copy=False).ravel()
        valid = gt != self.ignore_index
        gt, pred = gt[valid], pred[valid]
        self._check_range(gt, "ground-truth")
        self._check_range(pred, "prediction")
        k = self.num_classes
        self.matrix += np.bincount(gt * k + pred, minlength=k * k).reshape(k, k)

    def _check_range(self, values: np.ndarray, what: str) -> None:
        bad = (values < 0) | (values >= self.num_classes)
        if bad.any():
            found = np.unique(values[bad])[:10].tolist()
            raise ValueError(
                f"{what} values {found} are outside the {self.num_classes} classes [0, {self.num_classes - 1}]"
                f" (ignore index {self.ignore_index})"
            )

    def compute(self) -> SegmentationMetrics:
        """Scores of everything accumulated so far."""
        return metrics_from_confusion(self.matrix)


def metrics_from_confusion(matrix: np.ndarray) -> SegmentationMetrics:
    """mIoU, per-class IoU and pixel accuracy of a ``[K, K]`` confusion matrix (rows = GT, columns = prediction)."""
    matrix = matrix.astype(np.float64)
    intersection = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, intersection / union, np.nan)
    total = matrix.sum()
    defined = ~np.isnan(iou)
    return SegmentationMetrics(
        miou=float(iou[defined].mean()) if defined.any() else float("nan"),
        per_class_iou=iou,
        pixel_accuracy=float(intersection.sum() / total) if total > 0 else float("nan"),
        num_pixels=int(total),
    )
