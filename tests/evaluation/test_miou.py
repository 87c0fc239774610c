"""Dataset-level mIoU against torchmetrics and an mmseg-style reference."""
import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from synseg_core.evaluation.metrics import ConfusionMatrix, metrics_from_confusion

IGNORE = 255


def _random_maps(rng, num_classes, n_images=4, shape=(17, 23), ignore_fraction=0.1):
    preds, gts = [], []
    for _ in range(n_images):
        gt = rng.integers(0, num_classes, size=shape)
        gt[rng.random(shape) < ignore_fraction] = IGNORE
        # Predictions agree with the ground truth on about half the pixels so IoUs are far from 0 and 1.
        pred = np.where(rng.random(shape) < 0.5, np.where(gt == IGNORE, 0, gt), rng.integers(0, num_classes, shape))
        preds.append(pred)
        gts.append(gt)
    return preds, gts


def _mmseg_reference(preds, gts, num_classes):
    """mmseg ``intersect_and_union`` summed over images, then ``total_area_to_metrics`` with nanmean."""
    total_inter = np.zeros(num_classes)
    total_union = np.zeros(num_classes)
    total_label = np.zeros(num_classes)
    for pred, gt in zip(preds, gts):
        keep = gt != IGNORE
        pred, gt = pred[keep], gt[keep]
        inter = pred[pred == gt]
        area_inter = np.histogram(inter, bins=num_classes, range=(0, num_classes - 1))[0]
        area_pred = np.histogram(pred, bins=num_classes, range=(0, num_classes - 1))[0]
        area_label = np.histogram(gt, bins=num_classes, range=(0, num_classes - 1))[0]
        total_inter += area_inter
        total_union += area_pred + area_label - area_inter
        total_label += area_label
    with np.errstate(invalid="ignore"):
        iou = total_inter / total_union
    return np.nanmean(iou), iou, total_inter.sum() / total_label.sum()


@pytest.mark.parametrize("num_classes", [2, 7, 21])
def test_per_class_iou_matches_torchmetrics(num_classes):
    rng = np.random.default_rng(num_classes)
    preds, gts = _random_maps(rng, num_classes)
    cm = ConfusionMatrix(num_classes, ignore_index=IGNORE)
    jaccard = MulticlassJaccardIndex(num_classes=num_classes, ignore_index=IGNORE, average=None)
    for pred, gt in zip(preds, gts):
        cm.update(pred, gt)
        jaccard.update(torch.from_numpy(pred), torch.from_numpy(gt))
    ours = cm.compute()
    expected = jaccard.compute().numpy()
    np.testing.assert_allclose(ours.per_class_iou, expected, rtol=1e-6, atol=1e-7)
    assert ours.miou == pytest.approx(float(expected.mean()), rel=1e-6)
    assert ours.num_pixels == sum(int((g != IGNORE).sum()) for g in gts)


def test_absent_classes_are_left_out_of_the_mean_like_mmseg():
    num_classes = 6
    rng = np.random.default_rng(0)
    preds, gts = _random_maps(rng, 3, n_images=3)  # only classes 0..2 occur anywhere
    # Class 4 is predicted but never in the ground truth: IoU 0, counted. Classes 3 and 5 are absent: NaN.
    preds[0][0, :5] = 4
    cm = ConfusionMatrix(num_classes, ignore_index=IGNORE)
    for pred, gt in zip(preds, gts):
        cm.update(pred, gt)
    ours = cm.compute()
    ref_miou, ref_iou, ref_acc = _mmseg_reference(preds, gts, num_classes)
    np.testing.assert_allclose(ours.per_class_iou, ref_iou, equal_nan=True)
    assert np.isnan(ours.per_class_iou[[3, 5]]).all()
    assert ours.per_class_iou[4] == 0.0
    assert ours.miou == pytest.approx(ref_miou)
    assert ours.pixel_accuracy == pytest.approx(ref_acc)
    # The absent-class rule matters: averaging over all K classes would give a different number.
    assert ours.miou != pytest.approx(np.nan_to_num(ours.per_class_iou).mean())


def test_dataset_level_is_not_mean_of_per_image_scores():
    small_good = (np.array([[0, 1]]), np.array([[0, 1]]))
    big_bad = (np.zeros((10, 10), int), np.ones((10, 10), int))
    cm = ConfusionMatrix(2)
    for pred, gt in (small_good, big_bad):
        cm.update(pred, gt)
    m = cm.compute()
    # Rows = GT, columns = prediction: both classes have intersection 1 and union 101.
    expected = metrics_from_confusion(np.array([[1, 0], [100, 1]]))
    assert m.miou == pytest.approx(expected.miou)
    assert m.miou == pytest.approx((1 / 101 + 1 / 101) / 2)
    assert m.pixel_accuracy == pytest.approx(2 / 102)


def test_ignored_pixels_count_nowhere():
    gt = np.array([[IGNORE, IGNORE], [0, 1]])
    pred = np.array([[1, 1], [0, 1]])  # wrong only where ignored
    cm = ConfusionMatrix(2)
    cm.update(pred, gt)
    m = cm.compute()
    assert m.miou == 1.0 and m.pixel_accuracy == 1.0 and m.num_pixels == 2


def test_out_of_range_values_are_named():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"ground-truth values \[7\].*\[0, 2\]"):
        cm.update(np.zeros((2, 2), int), np.full((2, 2), 7))
    with pytest.raises(ValueError, match=r"prediction values \[-1\]"):
        cm.update(np.full((2, 2), -1), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    assert cm.matrix.sum() == 0  # a rejected update leaves the counts untouched
