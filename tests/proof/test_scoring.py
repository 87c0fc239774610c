"""Proof scores: foreground IoU and subset mIoU from hand-made confusion matrices, the all-background floor, and the
one-pass threshold sweep against the evaluator run once per threshold (an independent path)."""
import numpy as np
import pytest

from synseg_core import Segmenter
from synseg_core.deploy.backends.torch_backend import TorchBackend
from synseg_core.config import replace_inference
from synseg_core.evaluation.evaluator import evaluate_dataset
from synseg_proof.heldout import custom_dataset
from synseg_core.evaluation.demo_frames import foreground_iou
from synseg_proof.scoring import (background_floor, best_threshold, subset_miou, summarise,
                                       threshold_sweep)


def test_foreground_iou_counts_any_class_against_background():
    # rows = ground truth (bg, a, b), columns = prediction
    matrix = np.array([[10, 2, 0],
                       [1, 5, 3],   # a predicted as b still counts as foreground
                       [4, 0, 6]])
    both = 5 + 3 + 0 + 6
    assert foreground_iou(matrix) == pytest.approx(both / (both + 2 + 1 + 4))
    assert np.isnan(foreground_iou(np.diag([5, 0, 0])))


def test_subset_miou_skips_undefined_classes_and_rejects_unknown_names():
    iou = np.array([0.9, 0.5, np.nan, 0.1])
    classes = ["background", "a", "b", "c"]
    assert subset_miou(iou, classes, ["a", "b", "c"]) == pytest.approx(0.3)
    assert np.isnan(subset_miou(iou, classes, ["b"]))
    with pytest.raises(ValueError, match=r"\['d'\] are not in the class list"):
        subset_miou(iou, classes, ["d"])


def test_background_floor_predicts_background_everywhere(target_things_split):
    dataset = custom_dataset(target_things_split)
    floor = background_floor(dataset)
    assert floor.matrix[:, 1:].sum() == 0
    assert floor.matrix.sum() == sum(dataset[i].label.size for i in range(len(dataset)))
    scores = summarise(floor.matrix, dataset.classes, ["red star"])
    present = (floor.matrix.sum(axis=1) > 0).sum()
    assert scores["foreground_iou"] == 0.0
    assert scores["miou"] == pytest.approx(floor.matrix[0, 0] / floor.matrix[:, 0].sum() / present)


def test_threshold_sweep_matches_the_evaluator_run_per_threshold(target_things_split, tiny_model):
    dataset = custom_dataset(target_things_split)
    segmenter = Segmenter(tiny_model, TorchBackend(tiny_model))
    segmenter.inference = replace_inference(segmenter.inference, background=True, max_categories=64)
    thresholds = [0.3, 0.5, 0.55]
    sweep = threshold_sweep(segmenter, dataset, thresholds, limit=4)
    for threshold in thresholds:
        segmenter.inference = replace_inference(segmenter.inference, background_threshold=threshold)
        expected, _ = evaluate_dataset(segmenter, dataset, limit=4, progress=False)
        np.testing.assert_array_equal(sweep[threshold].matrix, expected.matrix)
    assert len({sweep[t].matrix.tobytes() for t in thresholds}) > 1  # the thresholds matter on these maps


def test_best_threshold_prefers_the_best_miou_then_the_one_nearest_half(target_things_split):
    dataset = custom_dataset(target_things_split)
    floor = background_floor(dataset)
    perfect = type(floor)(len(dataset.classes))
    for i in range(len(dataset)):
        perfect.update(dataset[i].label, dataset[i].label)
    assert best_threshold({0.2: floor, 0.7: perfect, 0.4: floor}) == (0.7, pytest.approx(1.0))
    assert best_threshold({0.2: floor, 0.6: floor, 0.45: floor})[0] == 0.45


def test_sweeps_need_a_background_class_and_a_threshold(target_things_split, tiny_segmenter):
    dataset = custom_dataset(target_things_split)
    with pytest.raises(ValueError, match="at least one background threshold"):
        threshold_sweep(tiny_segmenter, dataset, [])
    dataset.background_first = False
    with pytest.raises(ValueError, match="first class is background"):
        threshold_sweep(tiny_segmenter, dataset, [0.5])
