"""The same error convention in every command line of training/: bad input is exit 2 with a message that names
what was wrong, and no traceback (the CLIs' own tests cover their further cases)."""
import pytest

from trainer_fixtures import TINY_CONFIG, load_script

CLIS = {name: load_script(name) for name in ("train", "evaluate", "export", "build_engine", "extract_categories",
                                             "plot_metrics")}


@pytest.mark.parametrize("cli, argv, message", [
    ("train", ["--config", "{tmp}/missing.yaml"], "cannot read training config {tmp}/missing.yaml"),
    ("train", ["--config", str(TINY_CONFIG), "schedule.max_steps=0"], "schedule.max_steps must be >= 1, got 0"),
    ("evaluate", ["--dataset", "custom", "--data-root", "{tmp}", "--checkpoint", "tiny-test"],
     "dataset 'custom' needs a class-list file"),
    ("export", ["--checkpoint", "{tmp}/missing", "--out", "{tmp}/x.onnx"], "is neither a checkpoint folder"),
    ("export", ["--checkpoint", "tiny-test", "--out", "{tmp}/x.onnx", "--input-size", "50"],
     "multiple of the patch size"),
    ("build_engine", ["--onnx", "{tmp}/missing.onnx"], "ONNX file '{tmp}/missing.onnx' does not exist"),
    ("extract_categories", ["--format", "jsonl", "--input", "{tmp}/missing.jsonl", "--output", "{tmp}/o.jsonl"],
     "caption manifest not found: {tmp}/missing.jsonl"),
    ("plot_metrics", ["{tmp}/missing.jsonl"], "metrics file not found: {tmp}/missing.jsonl"),
])
def test_bad_input_is_exit_2_with_a_clear_message(cli, argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert CLIS[cli].main(argv) == 2
    err = capsys.readouterr().err
    assert message.replace("{tmp}", str(tmp_path)) in err and "Traceback" not in err, err


@pytest.mark.parametrize("cli", ["export", "plot_metrics"])
def test_an_output_that_cannot_be_written_is_exit_2(cli, unwritable_dir, tmp_path, capsys):
    folder, reason = unwritable_dir
    if cli == "export":
        argv = ["--checkpoint", "tiny-test", "--out", str(folder / "x.onnx"), "--input-size", "64"]
    else:
        (tmp_path / "metrics.jsonl").write_text('{"type": "train", "step": 1, "total": 1.0, "lr_decoder": 0.1}\n')
        argv = [str(tmp_path / "metrics.jsonl"), "--out", str(folder / "curves.png")]
    assert CLIS[cli].main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and str(folder) in captured.err, captured.err
    if cli == "export":  # checked before the model is loaded and traced
        assert reason in captured.err and "[export] loading" not in captured.out


def test_export_without_room_for_the_model_is_refused_before_tracing(tmpfs, capsys):
    small = tmpfs.mount("small", size="1m")  # the tiny model's fp32 weights take about 3.7 MB
    assert CLIS["export"].main(["--checkpoint", "tiny-test", "--out", str(small / "x.onnx")]) == 2
    captured = capsys.readouterr()
    assert "MiB needed" in captured.err and "tracing" not in captured.out, captured
    assert not list(small.iterdir())
