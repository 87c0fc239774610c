"""Evaluator: protocol/override precedence, class-id mapping (exact on a round trip), PAMR switch, errors."""
import dataclasses

import numpy as np
import pytest
import torch

from synseg_core import create_model, save_checkpoint
from synseg_core.config import InferenceConfig, get_model_config
from synseg_core.evaluation.evaluator import EvalSettings, build_segmenter, resolve_inference, run_evaluation

SMALL = {"short_side": 64, "window": 64, "stride": 32}


def _settings(**kw):
    base = dict(dataset="custom", data_root="unused", checkpoint="tiny-test")
    return EvalSettings(**{**base, **kw})


def test_protocol_then_overrides_then_dataset():
    base = get_model_config("tiny-test").inference
    tcl = resolve_inference(base, _settings(), background=True, num_categories=171)
    assert (tcl.short_side, tcl.window, tcl.stride, tcl.templates) == (448, 448, 224, "tcl_custom")
    assert tcl.background and tcl.background_threshold == 0.5 and tcl.max_categories == 171
    with_pamr = resolve_inference(base, _settings(pamr=True), background=True, num_categories=3)
    assert with_pamr.background_threshold == 0.4  # TCL's threshold when PAMR is on
    over = resolve_inference(base, _settings(pamr=True, overrides={"window": None, "background_threshold": 0.3}),
                             background=False, num_categories=3)
    assert over.window is None and over.background_threshold == 0.3 and not over.background
    own = resolve_inference(base, _settings(protocol="model"), background=True, num_categories=3)
    assert dataclasses.replace(own, background=base.background) == base


@pytest.mark.parametrize("kw,match", [
    (dict(protocol="mmseg"), r"unknown protocol 'mmseg'; valid protocols are \['model', 'tcl'\]"),
    (dict(method="clip"), r"unknown method 'clip'"),
    (dict(overrides={"windw": 3}), r"unknown inference overrides \['windw'\]; valid keys are \['short_side'"),
    (dict(overrides={"templates": "tcl"}), r"unknown template set 'tcl'; valid sets are .*'tcl_custom'"),
    (dict(limit=0), "limit must be a positive"),
])
def test_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        _settings(**kw)


@pytest.mark.parametrize("background_first", [True, False])
def test_predictions_written_as_ground_truth_score_100(tmp_path, custom_writer, background_first):
    """Label the images with the model itself, save them as ground truth, evaluate: every class must map back."""
    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("tiny-test"), tmp_path / "ckpt")
    classes = ["background", "cat", "dog"] if background_first else ["cat", "dog", "grass"]
    settings = _settings(data_root=str(tmp_path / "data"), checkpoint=str(ckpt), background_first=background_first,
                         overrides={**SMALL, "templates": "single"})
    seg = build_segmenter(settings, background=background_first, num_categories=2 if background_first else 3)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (48, 70, 3), dtype=np.uint8) for _ in range(2)]
    cats = classes[1:] if background_first else classes
    if background_first:  # put the threshold inside the value range so both background and categories occur
        probs = seg.segment(images[0], cats).probabilities
        settings = dataclasses.replace(settings, overrides={**settings.overrides,
                                                            "background_threshold": float(np.median(probs.max(0)))})
        seg = build_segmenter(settings, background=True, num_categories=2)
    labels = [seg.segment(im, cats).labels - (0 if background_first else 1) for im in images]
    assert len(np.unique(np.concatenate([lab.ravel() for lab in labels]))) >= 2
    classes_file = custom_writer(tmp_path / "data", images, labels, classes)
    report = run_evaluation(dataclasses.replace(settings, classes_file=str(classes_file)), progress=False)
    assert report.metrics.miou == 1.0 and report.metrics.pixel_accuracy == 1.0
    assert report.num_images == 2 and report.metrics.num_pixels == 2 * 48 * 70
    present = set(np.unique(np.concatenate([lab.ravel() for lab in labels])))
    assert {i for i, v in enumerate(report.metrics.per_class_iou) if not np.isnan(v)} == present


def test_pamr_changes_predictions_and_limit_and_samples(random_custom_dataset):
    root, classes_file = random_custom_dataset
    # No background: every pixel gets its best category, so smoothing along edges must move some labels.
    settings = _settings(data_root=str(root), classes_file=str(classes_file), overrides=SMALL)
    torch.manual_seed(0)
    plain = run_evaluation(dataclasses.replace(settings, limit=2, num_visualize=1), progress=False)
    torch.manual_seed(0)
    refined = run_evaluation(dataclasses.replace(settings, pamr=True), progress=False)
    assert plain.num_images == 2 and len(plain.samples) == 1 and refined.num_images == 3
    assert len(refined.samples) == 3  # num_visualize defaults to 8, capped by the dataset
    assert plain.metrics.num_pixels == 2 * 39 * 56 and refined.metrics.num_pixels == 3 * 39 * 56
    assert not np.array_equal(plain.samples[0].prediction, refined.samples[0].prediction)


def test_labels_outside_the_class_list_name_the_sample(tmp_path, custom_writer):
    image = np.zeros((32, 32, 3), np.uint8)
    classes_file = custom_writer(tmp_path, [image], [np.full((32, 32), 7)], ["cat", "dog"])
    settings = _settings(data_root=str(tmp_path), classes_file=str(classes_file), overrides=SMALL)
    with pytest.raises(ValueError, match=r"sample 'img00'.*ground-truth values \[7\]"):
        run_evaluation(settings, progress=False)


def test_model_protocol_keeps_checkpoint_settings():
    seg = build_segmenter(_settings(protocol="model"), background=False, num_categories=80)
    tiny = get_model_config("tiny-test").inference
    assert isinstance(seg.inference, InferenceConfig)
    assert (seg.inference.short_side, seg.inference.templates) == (tiny.short_side, tiny.templates)
    assert seg.inference.max_categories == max(tiny.max_categories, 80) and not seg.inference.background


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method,use_pamr", [("synseg", False), ("maskclip", True)])
def test_cuda_agrees_with_cpu(random_custom_dataset, method, use_pamr):
    root, classes_file = random_custom_dataset
    settings = _settings(data_root=str(root), classes_file=str(classes_file), overrides=SMALL, method=method,
                         pamr=use_pamr)
    reports = []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        reports.append(run_evaluation(dataclasses.replace(settings, device=device), progress=False))
    for cpu, gpu in zip(reports[0].samples, reports[1].samples):
        # A random-weight model's class scores sit close together, so TF32/kernel differences flip a few ties
        # (99.87% of pixels agreed on an H200).
        assert (cpu.prediction == gpu.prediction).mean() > 0.995
    assert reports[1].metrics.miou == pytest.approx(reports[0].metrics.miou, abs=1e-2)
