"""The training loop on generated caption data with the tiny model: the loss goes down, non-finite steps are
skipped without touching good checkpoints, bad samples are counted, and the extensions run."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from synseg_core import Segmenter
from synseg_core.training import records as records_module
from synseg_core.training import step as step_module
from synseg_core.training import load_train_config, run_training
from synseg_core.training.state import STATE_NAME, list_checkpoints, load_trainer_state
from trainer_fixtures import TINY_CONFIG, load_script, nonfinite_loss, read_records, tiny_overrides, \
    write_caption_dataset, write_caption_shard

main = load_script("train").main


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_caption_dataset(tmp_path_factory.mktemp("captions"), count=48, seed=0)


def train_args(manifest: Path, output_dir: Path, max_steps: int, **extra) -> list[str]:
    return ["--config", str(TINY_CONFIG), *tiny_overrides(manifest, output_dir, max_steps, **extra)]


@pytest.mark.slow
def test_loss_goes_down_and_the_checkpoint_is_a_usable_model(manifest, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(manifest, out, 30, **{"logging.plot": True})) == 0
    train = read_records(out, "train")
    assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30]
    first, last = train[0], train[-1]
    assert last["total"] < 0.9 * first["total"], (first, last)
    assert last["align"] < first["align"]
    assert all(r["images_per_s"] > 0 and r["lr_decoder"] > 0 for r in train)
    summary = read_records(out, "summary")[-1]
    assert summary["nonfinite_steps"] == 0 and not summary["stopped"]
    assert (out / "loss_curves.png").stat().st_size > 0
    assert "done: 30 steps" in capsys.readouterr().out
    folder = list_checkpoints(out)[-1][1]
    assert folder.name == "step_00000030" and load_trainer_state(folder)["data"] == {"epoch": 4, "batches": 6}  # 6 batches an epoch
    segmenter = Segmenter.from_checkpoint(folder)
    result = segmenter.segment(np.zeros((64, 64, 3), np.uint8), ["red circle", "blue square"])
    assert result.probabilities.shape == (2, 64, 64)


def test_a_nonfinite_step_is_skipped_logged_and_its_checkpoint_deferred(manifest, tmp_path, monkeypatch):
    monkeypatch.setattr(step_module, "synseg_loss", nonfinite_loss({4}))
    out = tmp_path / "run"
    assert main(train_args(manifest, out, 6, **{"checkpoint.every": 2, "checkpoint.keep_last": 5,
                                                "logging.every": 1})) == 0
    assert [s for s, _ in list_checkpoints(out)] == [2, 5, 6]  # step 4 was bad: its checkpoint waits for step 5
    bad = read_records(out, "nonfinite")
    assert [r["step"] for r in bad] == [4] and bad[0]["total"] == "nan"
    train = read_records(out, "train")
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert "total" not in train[3] and all("total" in r for r in train if r["step"] != 4)  # no good step to average
    assert read_records(out, "summary")[-1]["nonfinite_steps"] == 1
    for _, folder in list_checkpoints(out):
        assert all(torch.isfinite(t).all() for t in load_file(folder / "model.safetensors").values())


def test_consecutive_nonfinite_steps_stop_the_run_and_keep_the_good_checkpoint(manifest, tmp_path, monkeypatch,
                                                                              capsys):
    out = tmp_path / "run"
    args = train_args(manifest, out, 6, **{"checkpoint.every": 2, "runtime.max_consecutive_nonfinite": 2})
    monkeypatch.setattr(step_module, "synseg_loss", nonfinite_loss({3, 4, 5, 6}))
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "2 non-finite steps in a row (the last at step 4)" in err and "step_00000002" in err
    [(step, folder)] = list_checkpoints(out)
    assert step == 2 and load_trainer_state(folder)["step"] == 2
    good_weights = (folder / "model.safetensors").read_bytes()
    summary = read_records(out, "summary")[-1]
    assert summary["stopped"] and summary["nonfinite_steps"] == 2
    # The kept checkpoint is intact and resumable once the cause is gone.
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0
    assert [s for s, _ in list_checkpoints(out)] == [4, 6]
    assert read_records(out, "summary")[-1]["nonfinite_steps"] == 0  # steps 3-4 were redone from step 2's state
    assert good_weights != (list_checkpoints(out)[-1][1] / "model.safetensors").read_bytes()


def test_one_collective_per_logging_window(manifest, tmp_path, monkeypatch):
    """The window's losses and the run's sample and skip counts are summed over the ranks in one reduction."""
    calls = []

    def counted(tensor, op="sum"):
        calls.append(tensor.numel())
        return tensor

    monkeypatch.setattr(records_module, "all_reduce", counted)
    out = tmp_path / "run"
    assert main(train_args(manifest, out, 4, **{"logging.every": 1, "checkpoint.every": 100})) == 0
    assert len(calls) == 4 + 1  # four windows, then the final checkpoint's count
    assert [r["samples"] for r in read_records(out, "train")] == [8, 16, 24, 32]


def test_bad_samples_are_skipped_and_counted(tmp_path, capsys):
    bad_lines = [
        {"image": "images/missing.png", "caption": "a red circle", "categories": ["red circle"]},
        {"image": "images/corrupt.png", "caption": "a blue square", "categories": ["blue square"]},
        {"caption": "no image field"},
        {"image": "images/0000.png", "caption": "on the left", "categories": []},
    ]
    manifest = write_caption_dataset(tmp_path / "data", count=12, seed=3, extra_lines=bad_lines)
    (tmp_path / "data" / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "run"
    # 16 lines = 4 batches of 4: exactly one epoch, so every bad line is met once.
    assert main(train_args(manifest, out, 4, **{"loader.batch_size": 4})) == 0
    expected = {"missing_file": 1, "corrupt_image": 1, "bad_record": 1, "no_categories": 1}
    summary = read_records(out, "summary")[-1]
    assert {k: v for k, v in summary["skipped"].items() if v} == expected
    assert read_records(out, "train")[-1]["skipped"] == 4
    printed = capsys.readouterr().out
    assert all(f"{k!r}: {v}" in printed for k, v in expected.items())


def test_webdataset_shard_with_corrupt_images_trains_through(tmp_path):
    shard = write_caption_shard(tmp_path / "shards" / "000000.tar", count=12, seed=4, corrupt=(2, 7))
    out = tmp_path / "run"
    # 3 batches of 4 = exactly the shard's 12 samples, read in order.
    assert main(train_args(shard, out, 3, **{"data.format": "webdataset", "data.shuffle_buffer": 0,
                                             "loader.batch_size": 4})) == 0
    summary = read_records(out, "summary")[-1]
    assert {k: v for k, v in summary["skipped"].items() if v} == {"corrupt_image": 2}
    assert summary["nonfinite_steps"] == 0 and summary["empty_batches"] == 0
    assert load_trainer_state(list_checkpoints(out)[-1][1])["data"] == {"epoch": 0, "batches": 3}


def test_bf16_autocast_absent_pairs_and_the_evaluation_hook(manifest, tmp_path):
    cfg = load_train_config(TINY_CONFIG, tiny_overrides(manifest, tmp_path / "run", 3, **{
        "runtime.precision": "bf16", "model.overrides.loss.absent_weight": 0.5, "absent.per_image": 2,
        "eval.every": 2, "logging.every": 1}))
    calls = []

    def evaluate(model):
        calls.append((model.training, torch.is_grad_enabled()))
        probabilities = model(torch.zeros(1, 3, 64, 64), torch.ones(2, 32))  # runs with the bf16-stored CLIP
        assert probabilities.shape == (1, 2, 64, 64)
        return {"miou": 10.0 * len(calls)}

    start = {k: v.clone() for k, v in _trainable(cfg).items()}
    summary = run_training(cfg, evaluate=evaluate)
    assert summary.steps == 3 and summary.nonfinite_steps == 0
    assert calls == [(False, False), (False, False)]  # at step 2 and at the end, in eval mode without grad
    assert [(r["step"], r["miou"]) for r in read_records(tmp_path / "run", "eval")] == [(2, 10.0), (3, 20.0)]
    train = read_records(tmp_path / "run", "train")
    assert all(r["absent"] > 0 for r in train)
    assert all(abs(r["total"] - sum(r[k] for k in ("align", "cont", "back", "sep")) - 0.5 * r["absent"]) < 1e-3
               for r in train)
    final = load_file(Path(summary.last_checkpoint) / "model.safetensors")
    assert any(not torch.equal(final[k], v) for k, v in start.items())
    assert final["backbone.clip.visual.conv1.weight"].dtype == torch.bfloat16  # runtime.cast_frozen_clip
    assert final["backbone.clip.token_embedding.weight"].dtype == torch.float32  # the text tower stays fp32
    segmenter = Segmenter.from_checkpoint(summary.last_checkpoint)  # an fp32 model loads it
    assert segmenter.segment(np.zeros((64, 64, 3), np.uint8), ["red circle"]).probabilities.shape == (1, 64, 64)


def _trainable(cfg) -> dict[str, torch.Tensor]:
    """The initial trainable weights a run with `cfg` starts from (same seed, same model)."""
    from synseg_core.training.run import initial_model, seed_everything

    seed_everything(cfg.seed)
    return {k: v.detach() for k, v in initial_model(cfg.model).trainable_parameters().items()}


def test_eval_every_without_a_validation_set_is_an_error(manifest, tmp_path, capsys):
    assert main(train_args(manifest, tmp_path / "run", 2, **{"eval.every": 1})) == 2
    assert "eval.every=1 needs a validation set: eval.dataset" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_trainer_state_holds_everything_a_resume_needs(manifest, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(manifest, out, 2, **{"checkpoint.every": 2})) == 0
    state = load_trainer_state(list_checkpoints(out)[-1][1])
    assert set(state) >= {"step", "optimizer", "scheduler", "scaler", "rng", "data", "counters", "config"}
    assert state["data"] == {"epoch": 0, "batches": 2}
    assert state["scheduler"]["last_epoch"] == 2
    assert len(state["optimizer"]["state"]) > 0
    assert json.loads(json.dumps(state["config"]))["output_dir"] == str(out)
    assert (list_checkpoints(out)[-1][1] / STATE_NAME).is_file()
    assert dataclasses.is_dataclass(load_train_config(out / "train_config.yaml"))
