"""Validation while training: the model being trained scored on an evaluation dataset (a benchmark or a `custom`
folder) with the evaluation harness, as `training/evaluate.py` would score a checkpoint of it.

`Validation` is the trainer's evaluation hook that `eval.dataset` / `eval.data_root` configure: mIoU, pixel
accuracy (and foreground IoU on datasets with a background class), optionally the best of a background-threshold
sweep, and a grid of the first predictions for TensorBoard.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..config import ConfigError, InferenceConfig, replace_inference
from ..deploy.backends.torch_backend import TorchBackend
from ..evaluation.datasets import SegmentationDataset, build_dataset, list_datasets
from ..evaluation.demo_frames import foreground_iou
from ..evaluation.evaluator import PROTOCOLS, EvalSettings, evaluate_dataset, resolve_inference
from ..evaluation.reporting import qualitative_grid
from ..evaluation.sweep import best_threshold, threshold_sweep
from ..inference.segmenter import Segmenter
from ..model.synseg import SynSeg
from .config import EvalConfig

PREDICTIONS_TAG = "val/predictions"
TRAINING_MODEL = "(the model being trained)"  # the checkpoint field of the settings a validation runs with


@dataclass
class EvalOutcome:
    """What an evaluation hook may return besides plain metrics: the metrics and images (tag -> uint8 [H, W, 3])."""

    metrics: dict[str, float]
    images: dict[str, np.ndarray] = field(default_factory=dict)


class Validation:
    """Scores a model on `dataset` as the evaluator does (returns `EvalOutcome`; keys `val_miou`,
    `val_pixel_accuracy`, `val_foreground_iou` with a background class, `val_threshold` with a sweep).

    Args:
        dataset: the validation split.
        protocol: a key of the evaluator's PROTOCOLS.
        overrides: inference settings over the protocol's.
        limit: score only the first N images.
        thresholds: background thresholds to sweep (the best mIoU is reported); () = the protocol's threshold.
        num_images: predictions drawn into the returned grid.
        data_root: where the dataset came from (for `describe`).

    Raises:
        ValueError: bad protocol or overrides (ConfigError naming the setting), or a sweep on a dataset without
            background.
    """

    def __init__(self, dataset: SegmentationDataset, *, protocol: str = "tcl", overrides: dict | None = None,
                 limit: int | None = None, thresholds: Sequence[float] = (), num_images: int = 0,
                 data_root: str = "") -> None:
        if thresholds and not dataset.background_first:
            raise ValueError(f"a background-threshold sweep needs a dataset whose first class is background; "
                             f"{dataset.key} has none")
        self.dataset = dataset
        self.settings = EvalSettings(dataset=dataset.key, data_root=data_root, checkpoint=TRAINING_MODEL,
                                     protocol=protocol, overrides=dict(overrides or {}), limit=limit,
                                     num_visualize=num_images, background_first=dataset.background_first)
        self.thresholds = tuple(float(t) for t in thresholds)
        replace_inference(InferenceConfig(), **self.settings.overrides)  # bad values fail now, not at step N

    def describe(self) -> dict[str, Any]:
        """What decides the scores (a best score is comparable only under the same description)."""
        s = self.settings
        return {"dataset": s.dataset, "data_root": s.data_root, "classes": list(self.dataset.classes),
                "images": len(self.dataset), "protocol": s.protocol, "overrides": s.overrides, "limit": s.limit,
                "thresholds": list(self.thresholds)}

    def segmenter(self, model: SynSeg) -> Segmenter:
        """A Segmenter over the live model (its own device) with the run's inference settings."""
        segmenter = Segmenter(model, TorchBackend(model, next(model.parameters()).device, cuda_graphs=False))
        categories = len(self.dataset.classes) - int(self.dataset.background_first)
        segmenter.inference = resolve_inference(segmenter.inference, self.settings, self.dataset.background_first,
                                                categories)
        return segmenter

    def __call__(self, model: SynSeg) -> EvalOutcome:
        segmenter = self.segmenter(model)
        metrics: dict[str, float] = {}
        if self.thresholds:
            sweep = threshold_sweep(segmenter, self.dataset, self.thresholds, limit=self.settings.limit)
            threshold, _ = best_threshold(sweep)
            confusion = sweep[threshold]
            metrics["val_threshold"] = threshold
            samples = []
            if self.settings.num_visualize:  # drawn at the chosen threshold (a few more forward passes)
                segmenter.inference = replace_inference(segmenter.inference, background_threshold=threshold)
                _, samples = evaluate_dataset(segmenter, self.dataset, limit=self.settings.num_visualize,
                                              num_visualize=self.settings.num_visualize, progress=False)
        else:
            confusion, samples = evaluate_dataset(segmenter, self.dataset, limit=self.settings.limit,
                                                  num_visualize=self.settings.num_visualize, progress=False)
        scores = confusion.compute()
        metrics.update(val_miou=scores.miou, val_pixel_accuracy=scores.pixel_accuracy)
        if self.dataset.background_first:
            metrics["val_foreground_iou"] = foreground_iou(confusion.matrix)
        images = {PREDICTIONS_TAG: qualitative_grid(samples)} if samples else {}
        return EvalOutcome({k: float(v) for k, v in metrics.items()}, images)


def check_eval_config(cfg: EvalConfig) -> None:
    """Range and name checks of the eval section (no file access).

    Raises:
        ConfigError: naming the bad key, its value and what is allowed.
    """
    if cfg.dataset is not None and cfg.dataset not in list_datasets():
        raise ConfigError(f"eval.dataset: {cfg.dataset!r} is not one of {list_datasets()}")
    if cfg.dataset is not None and not cfg.data_root:
        raise ConfigError(f"eval.dataset={cfg.dataset} needs eval.data_root (the dataset's root folder)")
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f"eval.protocol: {cfg.protocol!r} is not one of {sorted(PROTOCOLS)}")
    if cfg.limit is not None and cfg.limit < 1:
        raise ConfigError(f"eval.limit must be >= 1 or null, got {cfg.limit}")
    if cfg.num_images < 0:
        raise ConfigError(f"eval.num_images must be >= 0, got {cfg.num_images}")
    bad = [t for t in cfg.thresholds if not 0 <= t <= 1]
    if bad:
        raise ConfigError(f"eval.thresholds must lie in [0, 1], got {bad}")


def build_validation(cfg: EvalConfig) -> Validation | None:
    """The validation hook `cfg` configures (None without `eval.dataset`); the dataset is read now, so a wrong
    path or class file fails before training.

    Raises:
        ConfigError: a bad eval section or dataset, naming the key.
    """
    check_eval_config(cfg)
    if cfg.dataset is None:
        return None
    try:
        dataset = build_dataset(cfg.dataset, cfg.data_root, classes_file=cfg.classes,
                                background_first=cfg.background_first)
        return Validation(dataset, protocol=cfg.protocol, overrides=cfg.overrides, limit=cfg.limit,
                          thresholds=cfg.thresholds, num_images=cfg.num_images, data_root=str(cfg.data_root))
    except ValueError as exc:
        raise ConfigError(f"eval ({cfg.dataset} at {cfg.data_root!r}): {exc}") from exc


def outcome_of(result: Any) -> EvalOutcome:
    """An evaluation hook's return value (`EvalOutcome` or a mapping of metrics) as an `EvalOutcome`."""
    if isinstance(result, EvalOutcome):
        return dataclasses.replace(result, metrics={k: float(v) for k, v in result.metrics.items()})
    return EvalOutcome({k: float(v) for k, v in result.items()})


def describe_hook(evaluate: Any) -> dict:
    """What an evaluation hook scores on, when it says (`Validation.describe`); {} otherwise."""
    describe = getattr(evaluate, "describe", None)
    return describe() if callable(describe) else {}
