"""training/evaluate.py end to end with the tiny model, and its errors on bad input."""
import importlib.util
import json
from importlib import metadata
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# training/ is a folder of scripts, not an installed package: load the CLI from its file.
_CLI = Path(__file__).resolve().parents[2] / "training" / "evaluate.py"
_spec = importlib.util.spec_from_file_location("synseg_evaluate_cli", _CLI)
evaluate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(evaluate)

SMALL = ["--short-side", "64", "--window", "64", "--stride", "32", "--no-progress"]


def _run(root, classes_file, out, *extra):
    return evaluate.main(["--dataset", "custom", "--data-root", str(root), "--classes", str(classes_file),
                          "--background-first", "--checkpoint", "tiny-test", "--out", str(out), *SMALL, *extra])


def test_full_run_writes_json_table_and_grid(random_custom_dataset, tmp_path, capsys):
    root, classes_file = random_custom_dataset
    assert _run(root, classes_file, tmp_path / "out", "--num-visualize", "2", "--templates", "single") == 0
    result = json.loads((tmp_path / "out" / "tiny-test_custom_synseg_tcl.json").read_text())
    assert result["dataset"] == "custom" and result["checkpoint"] == "tiny-test" and result["method"] == "synseg"
    assert result["num_images"] == 3 and result["num_pixels"] == 3 * 39 * 56 and not result["pamr"]
    assert list(result["per_class_iou"]) == ["background", "cat", "dog"]
    ious = [v for v in result["per_class_iou"].values() if v is not None]
    assert result["miou"] == pytest.approx(np.mean(ious))
    assert 0.0 <= result["pixel_accuracy"] <= 1.0
    inf = result["inference"]
    assert (inf["short_side"], inf["window"], inf["stride"], inf["templates"]) == (64, 64, 32, "single")
    assert inf["background"] and inf["background_threshold"] == 0.5
    assert result["settings"]["protocol"] == "tcl" and result["settings"]["overrides"]["templates"] == "single"
    table = (tmp_path / "out" / "tiny-test_custom_synseg_tcl.md").read_text()
    assert f"| custom | synseg | off | 3 | {100 * result['miou']:.2f} |" in table
    assert "| background |" in table and "| dog |" in table
    grid = np.asarray(Image.open(tmp_path / "out" / "tiny-test_custom_synseg_tcl_samples.png"))
    assert grid.shape[0] == 2 * (240 + 4) and grid.shape[2] == 3  # two rows of 240-pixel panels plus gaps
    assert "mIoU" in capsys.readouterr().out


def test_maskclip_with_pamr_is_reported_separately(random_custom_dataset, tmp_path):
    root, classes_file = random_custom_dataset
    assert _run(root, classes_file, tmp_path, "--method", "maskclip", "--pamr", "--window", "none",
                "--num-visualize", "0") == 0
    result = json.loads((tmp_path / "tiny-test_custom_maskclip_tcl_pamr.json").read_text())
    assert result["method"] == "maskclip" and result["pamr"]
    assert result["settings"]["pamr_config"] == {"num_iter": 10, "dilations": [1, 2, 4, 8, 12, 24],
                                                 "std_scale": 0.1, "eps": 1e-8}
    assert result["inference"]["window"] is None and result["inference"]["background_threshold"] == 0.4
    assert not (tmp_path / "tiny-test_custom_maskclip_tcl_pamr_samples.png").exists()


def test_benchmark_layout_through_the_cli(tmp_path):
    """voc21 in its mmseg layout: palette PNG labels with 255 borders, a split file, --limit."""
    for name in ("2007_000032", "2007_000033"):
        (tmp_path / "JPEGImages").mkdir(exist_ok=True)
        (tmp_path / "SegmentationClass").mkdir(exist_ok=True)
        Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(tmp_path / "JPEGImages" / f"{name}.jpg")
        label = np.zeros((40, 60), np.uint8)
        label[10:30, 20:40], label[10, :] = 15, 255
        Image.fromarray(label, mode="L").convert("P").save(tmp_path / "SegmentationClass" / f"{name}.png")
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000032\n2007_000033\n")
    out = tmp_path / "out"
    assert evaluate.main(["--dataset", "voc21", "--data-root", str(tmp_path), "--checkpoint", "tiny-test",
                          "--out", str(out), "--limit", "1", *SMALL]) == 0
    result = json.loads((out / "tiny-test_voc21_synseg_tcl.json").read_text())
    assert result["num_images"] == 1 and result["num_pixels"] == 40 * 60 - 60
    assert len(result["per_class_iou"]) == 21 and result["inference"]["templates"] == "tcl_custom"


@pytest.mark.parametrize("extra,match", [
    (["--data-root", "{tmp}/missing"], r"data root .*missing does not exist"),
    (["--templates", "tcl"], r"unknown template set 'tcl'"),
    (["--limit", "0"], "limit must be a positive"),
    (["--checkpoint", "no-such-model"], r"'no-such-model' is neither a checkpoint"),
])
def test_bad_input_is_a_clear_error(random_custom_dataset, tmp_path, capsys, extra, match):
    root, classes_file = random_custom_dataset
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    args = ["--dataset", "custom", "--data-root", str(root), "--classes", str(classes_file),
            "--checkpoint", "tiny-test", "--out", str(tmp_path / "out"), *SMALL, *extra]
    assert evaluate.main(args) == 2
    assert not (tmp_path / "out").exists()  # nothing is written for a run that failed
    err = capsys.readouterr().err
    assert err.startswith("evaluate: error: ")
    assert re.search(match, err), err


def test_mismatched_counts_and_missing_annotation_folder(random_custom_dataset, tmp_path, capsys):
    root, classes_file = random_custom_dataset
    (root / "annotations" / "img01.png").unlink()
    assert _run(root, classes_file, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "3 images but 2 label maps" in err and "without a label map: [img01]" in err
    for f in (root / "annotations").iterdir():
        f.unlink()
    (root / "annotations").rmdir()
    assert _run(root, classes_file, tmp_path / "out") == 2
    assert "annotation folder" in capsys.readouterr().err


@pytest.mark.parametrize("argv,match", [
    (["--dataset", "voc2012"], r"invalid choice: 'voc2012' \(choose from .*voc21.*custom"),
    (["--dataset", "custom", "--window", "big"], r"window must be an integer or 'none', got 'big'"),
    (["--dataset", "voc21", "--method", "clip"], r"invalid choice: 'clip'"),
])
def test_unknown_names_are_rejected_by_the_parser(capsys, argv, match):
    with pytest.raises(SystemExit) as exc:
        evaluate.main([*argv, "--data-root", "x", "--checkpoint", "tiny-test"])
    assert exc.value.code == 2
    assert re.search(match, capsys.readouterr().err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error shown without a GPU")
@pytest.mark.parametrize("method", ["synseg", "maskclip"])
def test_cuda_without_a_gpu_is_a_clear_error(random_custom_dataset, tmp_path, capsys, method):
    root, classes_file = random_custom_dataset
    assert _run(root, classes_file, tmp_path / "out", "--device", "cuda", "--method", method) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err


def _training_checkpoints(root, steps):
    """Checkpoints of a (pretend) training run: <root>/run/checkpoints/step_<N> with different weights, run.json."""
    from synseg_core import create_model
    from synseg_core.model.checkpoint import save_checkpoint
    from synseg_core.run_metadata import append_run_metadata, run_metadata

    run = root / "run"
    append_run_metadata(run, run_metadata("cpu", argv=["training/train.py", "--config", "x.yaml"]))
    folders = []
    for step in steps:
        torch.manual_seed(step)
        folders.append(save_checkpoint(create_model("tiny-test"), run / "checkpoints" / f"step_{step:08d}",
                                       extra={"step": step}))
    return folders


def test_results_are_named_by_checkpoint_and_never_overwritten(random_custom_dataset, tmp_path, capsys,
                                                              monkeypatch):
    root, classes_file = random_custom_dataset
    first, second = _training_checkpoints(tmp_path, [1, 2])
    out = tmp_path / "results"

    def run(checkpoint, *extra):
        return evaluate.main(["--dataset", "custom", "--data-root", str(root), "--classes", str(classes_file),
                              "--background-first", "--checkpoint", str(checkpoint), "--out", str(out), *SMALL,
                              "--num-visualize", "0", *extra])

    assert run(first) == 0 and run(second) == 0
    names = sorted(p.name for p in out.glob("*.json"))
    assert names == ["run-step_00000001_custom_synseg_tcl.json", "run-step_00000002_custom_synseg_tcl.json"]
    result = json.loads((out / names[0]).read_text())
    assert result["settings"]["device"] == "cpu"  # --device auto without a GPU
    assert "evaluate.py" in result["run"]["command"] and result["run"]["device"]["type"] == "cpu"
    assert result["run"]["packages"]["torch"] == metadata.version("torch")
    git = result["run"]["git"]
    assert re.fullmatch(r"[0-9a-f]{40}", git["commit"]) and isinstance(git["dirty"], bool)
    provenance = result["checkpoint_provenance"]
    assert provenance["label"] == "run-step_00000001" and provenance["metadata"]["extra"]["step"] == 1
    assert provenance["training_run"]["starts"][0]["argv"] == ["training/train.py", "--config", "x.yaml"]
    assert json.loads((out / names[1]).read_text())["miou"] != result["miou"]  # two models, two results

    before = (out / names[0]).stat().st_mtime_ns
    monkeypatch.setattr(evaluate, "run_evaluation", lambda *a, **k: pytest.fail("evaluated over an existing result"))
    capsys.readouterr()
    assert run(first) == 2
    err = capsys.readouterr().err
    assert "run-step_00000001_custom_synseg_tcl.json" in err and "pass --overwrite" in err, err
    assert (out / names[0]).stat().st_mtime_ns == before
    monkeypatch.undo()
    assert run(first, "--overwrite") == 0
    assert (out / names[0]).stat().st_mtime_ns != before
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_an_unwritable_out_fails_before_evaluating(random_custom_dataset, unwritable_dir, capsys, monkeypatch):
    root, classes_file = random_custom_dataset
    out, reason = unwritable_dir
    monkeypatch.setattr(evaluate, "run_evaluation", lambda *a, **k: pytest.fail("evaluated into an unwritable --out"))
    assert _run(root, classes_file, out) == 2
    err = capsys.readouterr().err
    assert err.startswith("evaluate: error: --out ") and reason in err, err


def test_precision_choices_come_from_the_capability_table(random_custom_dataset, tmp_path, capsys):
    from synseg_core.deploy.capabilities import PRECISIONS

    for precision in PRECISIONS:
        assert evaluate.parse_args(["--dataset", "custom", "--data-root", "x", "--checkpoint", "c",
                                    "--precision", precision]).precision == precision
    if not torch.cuda.is_available():
        root, classes_file = random_custom_dataset
        assert _run(root, classes_file, tmp_path / "out", "--precision", "fp16") == 2
        assert "fp16 needs a CUDA device" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()
