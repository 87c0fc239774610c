"""training/train.py under faults a hostile but honest user meets: data with nothing usable or too much skipped,
output folders that cannot be written or fill up mid-run, and checkpoints that no longer load. Each ends with a
clear message and exit 2 (no traceback), and leaves what was written before intact."""
import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from synseg_core.model.checkpoint import load_checkpoint
from synseg_core.training.state import list_checkpoints, load_trainer_state
from trainer_fixtures import TINY_CONFIG, load_script, read_records, tiny_overrides, write_caption_dataset

train = load_script("train")


def _args(manifest, out, steps, **extra):
    return ["--config", str(TINY_CONFIG), *tiny_overrides(manifest, out, steps, **extra)]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_caption_dataset(tmp_path_factory.mktemp("captions"), count=16, seed=7)


def test_a_run_without_one_usable_sample_stops_with_the_counts_and_names(tmp_path, capsys, caplog):
    manifest = write_caption_dataset(tmp_path / "data", count=16, seed=3)
    for image in (tmp_path / "data" / "images").iterdir():
        image.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        code = train.main(_args(manifest, out, 20))
    captured = capsys.readouterr()
    assert code == 2 and "done:" not in captured.out
    err = captured.err
    assert "step 5: no usable sample: skipped 40 samples: corrupt_image=40 of 40 read" in err, err
    assert f"first skipped: {manifest.resolve()}:" in err and f"every skipped record is listed in {out}" in err
    assert "Traceback" not in err
    assert not list_checkpoints(out)  # no checkpoint of untrained weights
    report = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert len(report) == 40 and {r["reason"] for r in report} == {"corrupt_image"}
    assert {r["source"] for r in report} == {f"{manifest.resolve()}:{n}" for n in range(1, 17)}
    named = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped ")]
    assert len(named) == 10 and "all are in" in named[-1]  # the first ten in the log, all in the report
    assert read_records(out, "summary")[-1]["stopped"]


def test_skipped_records_are_named_by_line_and_the_ratio_limit_holds(tmp_path, capsys):
    manifest = write_caption_dataset(tmp_path / "data", count=8, seed=4, extra_lines=[
        {"image": "images/missing.png", "caption": "a red circle on sand"}, {"caption": "no image"}])
    with manifest.open("a") as f:
        f.write("\n{not json\n")  # a blank line, then a broken one: line numbers count every line
    lines = manifest.read_text().split("\n")
    expected = {f"{manifest.resolve()}:{lines.index(text) + 1}": reason for text, reason in (
        ('{"image": "images/missing.png", "caption": "a red circle on sand"}', "missing_file"),
        ('{"caption": "no image"}', "bad_record"), ("{not json", "bad_record"))}
    one_epoch = {"loader.batch_size": 4, "loader.drop_last": False}  # 11 records: 3 steps read each once
    assert train.main(_args(manifest, tmp_path / "strict", 3, **one_epoch, **{"runtime.max_skip_ratio": 0.1})) == 2
    err = capsys.readouterr().err
    assert "of the samples skipped (runtime.max_skip_ratio=0.1)" in err and "missing_file=1" in err, err

    out = tmp_path / "lenient"
    assert train.main(_args(manifest, out, 3, **one_epoch, **{"runtime.max_skip_ratio": 0.5})) == 0
    report = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert {r["source"]: r["reason"] for r in report} == expected
    summary = read_records(out, "summary")[-1]
    assert summary["samples"] == 8 and summary["skipped"]["bad_record"] == 2


def test_an_output_dir_that_cannot_be_written_exits_2_before_training(manifest, unwritable_dir, capsys):
    out, reason = unwritable_dir
    assert train.main(_args(manifest, out, 2)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: output_dir {out} ") and reason in err and "Traceback" not in err, err


def test_too_little_room_for_a_checkpoint_is_refused_up_front(manifest, tmpfs, capsys):
    out = tmpfs.mount("small", size="2m") / "run"
    assert train.main(_args(manifest, out, 2)) == 2
    err = capsys.readouterr().err
    assert "MiB free on its file system" in err and "MiB needed" in err, err
    assert not out.exists()


@pytest.mark.slow
def test_a_full_disk_mid_run_keeps_the_earlier_checkpoints_and_resume_finishes(manifest, tmpfs, capsys):
    disk = tmpfs.mount("disk", size="18m")  # room for two tiny checkpoints (7.4 MB each), not three
    out = disk / "run"
    args = _args(manifest, out, 5, **{"checkpoint.every": 1, "checkpoint.keep_last": 10})
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert "cannot write checkpoint" in err and "No space left on device" in err and "Traceback" not in err, err
    assert "earlier checkpoints are intact (step_00000001, step_00000002)" in err
    assert [s for s, _ in list_checkpoints(out)] == [1, 2]
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]  # no half checkpoint left
    for _, folder in list_checkpoints(out):
        load_trainer_state(folder)
        load_checkpoint(folder)
    tmpfs.resize(disk, "64m")
    assert train.main([*args, "--resume"]) == 0
    assert [s for s, _ in list_checkpoints(out)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("damaged", ["trainer_state.pt", "model.safetensors"])
def test_resume_falls_back_past_a_damaged_checkpoint_and_says_so(manifest, tmp_path, caplog, damaged):
    out = tmp_path / "run"
    args = _args(manifest, out, 4, **{"checkpoint.every": 2, "logging.every": 1})
    assert train.main(args) == 0
    newest = list_checkpoints(out)[-1][1]
    straight = {k: v.clone() for k, v in load_file(newest / "model.safetensors").items()}  # (not the mmap)
    data = (newest / damaged).read_bytes()
    (newest / damaged).write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        assert train.main([*args, "--resume"]) == 0
    warning = next(r.getMessage() for r in caplog.records if "resume: skipped checkpoint" in r.getMessage())
    assert "skipped checkpoint step_00000004 (" in warning and str(newest / damaged) in warning
    assert "fell back to step_00000002" in warning and "moved it to" in warning
    assert (out / "checkpoints" / "unusable_step_00000004" / damaged).is_file()  # kept for inspection
    resumed = load_file(list_checkpoints(out)[-1][1] / "model.safetensors")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)  # steps 3-4 redone exactly
    assert [r["step"] for r in read_records(out, "train")] == [1, 2, 3, 4]


def test_resume_with_no_loadable_checkpoint_lists_each_reason(manifest, tmp_path, capsys):
    out = tmp_path / "run"
    args = _args(manifest, out, 4, **{"checkpoint.every": 2})
    assert train.main(args) == 0
    for _, folder in list_checkpoints(out):
        (folder / "trainer_state.pt").write_bytes(b"garbage")
    assert train.main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "can be resumed from: step_00000004: cannot read" in err and "; step_00000002: cannot read" in err, err
    assert [s for s, _ in list_checkpoints(out)] == [2, 4]  # nothing moved when there is nothing to fall back to
