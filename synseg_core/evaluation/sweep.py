"""Background-threshold sweep: the confusion matrices of several background thresholds from one forward pass per
image, and the threshold with the best mIoU. Used by validation during training and by the proof of learning."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from synseg_core.evaluation.datasets import SegmentationDataset
from synseg_core.evaluation.metrics import ConfusionMatrix, metrics_from_confusion
from synseg_core.inference.postprocess import labels_from_probabilities
from synseg_core.inference.segmenter import Segmenter

NEUTRAL_THRESHOLD = 0.5  # ties in mIoU go to the threshold nearest this


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
    miou, threshold = max(scored, key=lambda mt: (mt[0], -abs(mt[1] - NEUTRAL_THRESHOLD), -mt[1]))
    return threshold, float(miou)
