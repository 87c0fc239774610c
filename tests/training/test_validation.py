"""Validation while training from the command line: a tiny run validating on a generated custom split, read back
from its TensorBoard events, its best/ checkpoint checked against a separate evaluation, run metadata and
provenance; the best-so-far across a resume; bad eval sections."""
import json
import re

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from synseg_core.training import load_train_config, run_training
from synseg_core.training.best import read_best_info
from synseg_core.training.state import list_checkpoints
from trainer_fixtures import (TINY_CONFIG, load_script, read_records, tiny_overrides, write_caption_dataset,
                              write_segmentation_split)

train = load_script("train")
evaluate = load_script("evaluate")
THRESHOLDS = [0.3, 0.5, 0.7]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    manifest = write_caption_dataset(root / "captions", count=24, seed=2)
    classes = write_segmentation_split(root / "val", count=6, seed=3)
    return manifest, root / "val", classes


def validation(val, classes, **extra) -> dict:
    return {"eval.every": 2, "eval.dataset": "custom", "eval.data_root": str(val), "eval.classes": str(classes),
            "eval.background_first": True, "eval.protocol": "model", "eval.num_images": 2, **extra}


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    manifest, val, classes = data
    out = tmp_path_factory.mktemp("runs") / "tiny"
    settings = {"logging.every": 1, "logging.plot": True, "checkpoint.every": 2, "checkpoint.keep_last": 5,
                **validation(val, classes, **{"eval.thresholds": THRESHOLDS})}
    assert train.main(["--config", str(TINY_CONFIG), *tiny_overrides(manifest, out, 6, **settings)]) == 0
    return out


@pytest.mark.slow
def test_tensorboard_events_hold_the_losses_lr_throughput_memory_and_validation(run):
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss/total", "loss/align", "loss/cont", "loss/back", "loss/sep", "train/images_per_s",
            "train/rss_mb", "train/grad_norm", "val/miou", "val/threshold",
            "val/foreground_iou"} <= set(tags["scalars"])
    assert any(t.startswith("lr/") for t in tags["scalars"])
    train_records = read_records(run, "train")
    total = events.Scalars("loss/total")
    assert [e.step for e in total] == [r["step"] for r in train_records] == [1, 2, 3, 4, 5, 6]
    assert [e.value for e in total] == pytest.approx([r["total"] for r in train_records])  # (TB stores float32)
    evals = read_records(run, "eval")
    assert [e.step for e in events.Scalars("val/miou")] == [r["step"] for r in evals] == [2, 4, 6]
    assert all(r["val_threshold"] in THRESHOLDS and 0 <= r["val_miou"] <= 1 for r in evals)
    images = events.Images("val/predictions")
    assert [i.step for i in images] == [2, 4, 6] and images[0].height == 2 * (240 + 4)  # two rows of panels
    assert (run / "loss_curves.png").is_file()  # the JSONL and the PNG stay


@pytest.mark.slow
def test_best_checkpoint_is_the_best_step_and_matches_a_separate_evaluation(run, data, tmp_path):
    _, val, classes = data
    evals = read_records(run, "eval")
    best = max(evals, key=lambda r: (r["val_miou"], -r["step"]))
    info = read_best_info(run)
    assert (info["step"], info["metric"]) == (best["step"], "val_miou")
    assert info["score"] == pytest.approx(best["val_miou"])
    assert info["metrics"]["val_threshold"] == best["val_threshold"]
    assert info["validation"]["thresholds"] == THRESHOLDS and info["validation"]["images"] == 6
    step_folder = dict(list_checkpoints(run))[best["step"]]
    a, b = load_file(run / "checkpoints" / "best" / "model.safetensors"), load_file(step_folder / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    out = tmp_path / "eval"
    assert evaluate.main(["--dataset", "custom", "--data-root", str(val), "--classes", str(classes),
                          "--background-first", "--checkpoint", str(run / "checkpoints" / "best"), "--protocol",
                          "model", "--background-threshold", str(best["val_threshold"]), "--out", str(out),
                          "--no-progress", "--num-visualize", "0"]) == 0
    result = json.loads((out / "tiny-best_custom_synseg_model.json").read_text())
    assert result["miou"] == pytest.approx(info["score"], abs=1e-6)
    assert result["checkpoint_provenance"]["metadata"]["extra"]["best"]["step"] == best["step"]


@pytest.mark.slow
def test_run_metadata_and_checkpoint_provenance(run):
    starts = json.loads((run / "run.json").read_text())["starts"]
    assert len(starts) == 1
    entry = starts[0]
    assert entry["argv"][0].endswith("train.py") and "--config" in entry["argv"] and "eval.every=2" in entry["argv"]
    assert re.fullmatch(r"[0-9a-f]{40}", entry["git"]["commit"]) and isinstance(entry["git"]["dirty"], bool)
    assert entry["packages"]["torch"] and entry["packages"]["open_clip_torch"] and entry["packages"]["python"]
    assert (entry["device"]["type"], entry["world_size"], entry["seed"], entry["resumed"]) == ("cpu", 1, 0, False)
    config = json.loads((list_checkpoints(run)[-1][1] / "config.json").read_text())
    assert config["extra"]["code"]["git"] == entry["git"] and config["extra"]["step"] == 6


@pytest.mark.slow
def test_resume_keeps_the_best_so_far(data, tmp_path):
    manifest, _, _ = data
    out = tmp_path / "run"
    scores = iter([0.5, 0.9, 0.3, 0.4])  # steps 2, 4 | resumed: 6, 8

    def hook(model):
        return {"val_miou": next(scores)}

    cfg = load_train_config(TINY_CONFIG, tiny_overrides(manifest, out, 8, **{
        "eval.every": 2, "checkpoint.every": 2, "checkpoint.keep_last": 5, "logging.every": 1}))
    run_training(cfg, evaluate=hook, stop_at=4)
    assert read_best_info(out)["step"] == 4
    run_training(cfg, evaluate=hook, resume=True)
    info = read_best_info(out)
    assert (info["step"], info["score"]) == (4, 0.9)
    a = load_file(out / "checkpoints" / "best" / "model.safetensors")
    b = load_file(dict(list_checkpoints(out))[4] / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [(r["step"], r["score"]) for r in read_records(out, "best")] == [(2, 0.5), (4, 0.9)]
    assert [r["step"] for r in read_records(out, "eval")] == [2, 4, 6, 8]
    starts = json.loads((out / "run.json").read_text())["starts"]
    assert [(s["resumed"], s["start_step"]) for s in starts] == [(False, 0), (True, 4)]


@pytest.mark.parametrize("extra, drop, message", [
    ({"eval.dataset": "pascal"}, (), "eval.dataset: 'pascal' is not one of"),
    ({}, ("eval.data_root",), "eval.dataset=custom needs eval.data_root"),
    ({}, ("eval.classes",), "needs a class-list file"),
    ({"eval.protocol": "mmseg"}, (), "eval.protocol: 'mmseg' is not one of ['model', 'tcl']"),
    ({"eval.thresholds": [0.5, 1.5]}, (), "eval.thresholds must lie in [0, 1], got [1.5]"),
    ({"eval.background_first": False, "eval.thresholds": [0.5]}, (), "background-threshold sweep needs a dataset"),
    ({"eval.overrides": {"window": "big"}}, (), "expected an integer"),
])
def test_a_bad_eval_section_exits_2_before_training(data, tmp_path, capsys, extra, drop, message):
    manifest, val, classes = data
    settings = {k: v for k, v in {**validation(val, classes), **extra}.items() if k not in drop}
    code = train.main(["--config", str(TINY_CONFIG), *tiny_overrides(manifest, tmp_path / "run", 2, **settings)])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not list_checkpoints(tmp_path / "run") and not (tmp_path / "run" / "metrics.jsonl").exists()


def test_validation_scores_like_an_evaluation_of_the_saved_checkpoint(data, tmp_path):
    from synseg_core import create_model
    from synseg_core.evaluation.datasets import build_dataset
    from synseg_core.evaluation.evaluator import EvalSettings, run_evaluation
    from synseg_core.model.checkpoint import save_checkpoint
    from synseg_core.training.validation import PREDICTIONS_TAG, Validation

    _, val, classes = data
    torch.manual_seed(1)
    model = create_model("tiny-test")
    folder = save_checkpoint(model, tmp_path / "ckpt")
    dataset = build_dataset("custom", val, classes_file=classes, background_first=True)
    outcome = Validation(dataset, protocol="model", overrides={"background_threshold": 0.4}, limit=4,
                         num_images=3)(model)
    report = run_evaluation(EvalSettings(dataset="custom", data_root=str(val), checkpoint=str(folder),
                                         protocol="model", overrides={"background_threshold": 0.4}, limit=4,
                                         classes_file=str(classes), background_first=True), progress=False)
    assert outcome.metrics["val_miou"] == pytest.approx(report.metrics.miou, abs=1e-9)
    assert outcome.metrics["val_pixel_accuracy"] == pytest.approx(report.metrics.pixel_accuracy, abs=1e-9)
    assert 0 <= outcome.metrics["val_foreground_iou"] <= 1 and "val_threshold" not in outcome.metrics
    assert outcome.images[PREDICTIONS_TAG].shape[0] == 3 * (240 + 4)  # three rows: image | truth | prediction
