"""Scoring one model of the proof: background threshold chosen on the validation split, then the held-out split
through the project's evaluator (what `training/evaluate.py --dataset custom` runs), keeping the confusion matrix
for the foreground IoU and the never-masked mIoU."""
from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import Sequence

import numpy as np

from synseg_core.evaluation.datasets import SegmentationDataset, build_dataset
from synseg_core.evaluation.evaluator import EvalSettings, EvaluationReport, build_segmenter, evaluate_dataset
from synseg_core.evaluation.reporting import write_report
from .synthetic.writers import CLASSES_FILE
from .scoring import background_floor, best_threshold, summarise, threshold_sweep

SUMMARY_FILE = "summary.json"
SAMPLES_FILE = "samples.npz"
PROTOCOL = "model"  # the checkpoint's own inference settings (whole 128-px image), not the 448-px TCL protocol


def custom_dataset(split_dir: str | Path) -> SegmentationDataset:
    """A background-first synthetic split through the evaluator's ``custom`` reader."""
    return build_dataset("custom", str(split_dir), classes_file=str(Path(split_dir) / CLASSES_FILE),
                         background_first=True)


def eval_settings(split_dir: str | Path, checkpoint: str | Path, method: str, threshold: float | None,
                  num_visualize: int = 0) -> EvalSettings:
    """Evaluator settings of a custom background-first split (threshold None = the checkpoint's own)."""
    overrides = {} if threshold is None else {"background_threshold": float(threshold)}
    return EvalSettings(dataset="custom", data_root=str(split_dir), checkpoint=str(checkpoint), protocol=PROTOCOL,
                        method=method, num_visualize=num_visualize,
                        classes_file=str(Path(split_dir) / CLASSES_FILE), background_first=True,
                        overrides=overrides)


def evaluate_command(settings: EvalSettings, out_dir: str | Path) -> str:
    """The `training/evaluate.py` command line that reproduces an evaluation."""
    argv = ["--dataset", settings.dataset, "--data-root", settings.data_root, "--classes", str(settings.classes_file),
            "--background-first", "--checkpoint", settings.checkpoint, "--protocol", settings.protocol,
            "--method", settings.method, "--out", str(out_dir)]
    if "background_threshold" in settings.overrides:
        argv += ["--background-threshold", f"{settings.overrides['background_threshold']:g}"]
    return "python training/evaluate.py " + shlex.join(argv)


def validation_threshold(val_dir: str | Path, checkpoint: str | Path, method: str,
                         thresholds: Sequence[float]) -> tuple[float, float]:
    """(background threshold, validation mIoU) of the threshold with the best validation mIoU."""
    dataset = custom_dataset(val_dir)
    segmenter = build_segmenter(eval_settings(val_dir, checkpoint, method, None), True, len(dataset.classes) - 1)
    return best_threshold(threshold_sweep(segmenter, dataset, thresholds))


def evaluate_heldout(test_dir: str | Path, checkpoint: str | Path, method: str, threshold: float,
                     never_masked: Sequence[str], out_dir: str | Path, num_visualize: int) -> dict:
    """Score a model on the held-out split and write the evaluator's JSON/markdown/grid plus ``summary.json`` and
    the first `num_visualize` predictions (``samples.npz``) into `out_dir`.

    Returns:
        the summary: mIoU, never-masked mIoU, foreground IoU, per-class IoU, threshold and the command.
    """
    settings = eval_settings(test_dir, checkpoint, method, threshold, num_visualize)
    dataset = custom_dataset(test_dir)
    segmenter = build_segmenter(settings, True, len(dataset.classes) - 1)
    confusion, samples = evaluate_dataset(segmenter, dataset, num_visualize=num_visualize, progress=False)
    report = EvaluationReport(settings=settings, inference=dataclasses.replace(segmenter.inference),
                              classes=dataset.classes, background_first=True, metrics=confusion.compute(),
                              num_images=len(dataset), samples=samples)
    out = Path(out_dir)
    write_report(report, out)
    summary = {**summarise(confusion.matrix, dataset.classes, never_masked), "threshold": float(threshold),
               "num_images": len(dataset), "command": evaluate_command(settings, out)}
    if samples:
        np.savez_compressed(out / SAMPLES_FILE, names=np.array([s.name for s in samples]),
                            images=np.stack([s.image for s in samples]),
                            ground_truth=np.stack([s.ground_truth for s in samples]),
                            prediction=np.stack([s.prediction for s in samples]))
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def floor_summary(test_dir: str | Path, never_masked: Sequence[str], out_dir: str | Path) -> dict:
    """The all-background floor on the held-out split, written like a model's summary."""
    dataset = custom_dataset(test_dir)
    summary = {**summarise(background_floor(dataset).matrix, dataset.classes, never_masked), "threshold": None,
               "num_images": len(dataset), "command": None}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    return summary
