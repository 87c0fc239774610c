"""Trainer building blocks without a training loop: optimiser groups, schedule, absent pairs, precision,
checkpoint state files, metrics files and plots, model initialisation."""
import json
import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from synseg_core import create_model, save_checkpoint
from synseg_core.model.checkpoint import CheckpointError
from synseg_core.config import ConfigError
from synseg_core.training.absent import absent_pairs
from synseg_core.training.config import ModelSection, OptimConfig, ScheduleConfig
from synseg_core.training.metrics import MetricsLogger, WindowAverage, read_metrics
from synseg_core.training.optim import build_optimizer, build_scheduler, parameter_groups
from synseg_core.training.plot import plot_metrics
from synseg_core.training.precision import MixedPrecision, resolve_precision
from synseg_core.training.run import initial_model
from synseg_core.training.state import (
    STATE_NAME,
    capture_rng,
    latest_checkpoint,
    list_checkpoints,
    load_trainer_state,
    remove_stale_temporaries,
    restore_rng,
    save_training_checkpoint,
)

CPU = torch.device("cpu")


def test_optimizer_holds_only_trainable_parameters_with_the_right_lr_and_decay(tiny_model):
    cfg = OptimConfig(lr=1e-4, projector_lr=1e-3, weight_decay=0.05)
    trainable = tiny_model.trainable_parameters()
    opt = build_optimizer(trainable, cfg)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in trainable.values()}
    assert not any(id(p) in in_opt for p in tiny_model.backbone.parameters())
    by_name = {g["name"]: g for g in opt.param_groups}
    assert set(by_name) == {"decoder", "decoder_no_decay", "projector", "projector_no_decay"}
    names = {id(p): n for n, p in trainable.items()}
    for group in opt.param_groups:
        is_projector = group["name"].startswith("projector")
        assert group["lr"] == (1e-3 if is_projector else 1e-4)
        assert group["weight_decay"] == (0.0 if group["name"].endswith("no_decay") else 0.05)
        for p in group["params"]:
            assert names[id(p)].startswith("synergy.") == is_projector
            assert (p.ndim <= 1) == group["name"].endswith("no_decay")  # biases and LayerNorm weights
    assert "decoder.layers.0.layer_norm1.weight" in {names[id(p)] for p in by_name["decoder_no_decay"]["params"]}


def test_frozen_parameters_are_left_out_and_nothing_trainable_is_an_error(tiny_model):
    trainable = tiny_model.trainable_parameters()
    trainable["decoder.film_mul.weight"].requires_grad_(False)
    groups = parameter_groups(trainable, OptimConfig())
    assert sum(len(g["params"]) for g in groups) == len(trainable) - 1
    for p in trainable.values():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(trainable, OptimConfig())


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    params = [torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2))]
    opt = torch.optim.AdamW([{"params": params[:1], "lr": 1e-3}, {"params": params[1:], "lr": 1e-4}])
    schedule = ScheduleConfig(max_steps=100, warmup_steps=10, min_lr=1e-6)
    sched = build_scheduler(opt, schedule)
    lrs = []
    for _ in range(100):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    lrs.append([g["lr"] for g in opt.param_groups])
    assert lrs[0] == pytest.approx([1e-4, 1e-5])  # the first step already learns
    assert lrs[9] == pytest.approx([1e-3, 1e-4])
    assert lrs[55] == pytest.approx([1e-6 + (1e-3 - 1e-6) * 0.5, 1e-6 + (1e-4 - 1e-6) * 0.5])
    assert lrs[100] == pytest.approx([1e-6, 1e-6])
    decay = [lr[0] for lr in lrs[10:]]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_absent_pairs_come_from_other_images_and_respect_the_limit():
    categories = ["dog", "car", "dog", "tree", "sky", "car"]
    owner = torch.tensor([0, 0, 1, 1, 2, 2])
    names, absent_owner = absent_pairs(categories, owner, 3, per_image=2, generator=torch.Generator().manual_seed(0))
    own = {0: {"dog", "car"}, 1: {"dog", "tree"}, 2: {"sky", "car"}}
    assert absent_owner.tolist() == sorted(absent_owner.tolist()) and absent_owner.dtype == torch.int64
    for name, b in zip(names, absent_owner.tolist()):
        assert name not in own[b]
    counts = torch.bincount(absent_owner, minlength=3).tolist()
    assert counts == [2, 2, 2]
    again = absent_pairs(categories, owner, 3, 2, torch.Generator().manual_seed(0))
    assert again[0] == names
    one_image = absent_pairs(["a", "b"], torch.tensor([0, 0]), 1, 4, torch.Generator().manual_seed(0))
    assert one_image[0] == [] and one_image[1].numel() == 0


def test_precision_resolution_and_scaler():
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("auto", CPU) in ("bf16", "fp32")
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU)
    bf16 = MixedPrecision("bf16", CPU)
    assert not bf16.scaler.is_enabled()
    with bf16.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with MixedPrecision("fp32", CPU).autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    torch.save(state, tmp_path / "rng.pt")
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_checkpoints_are_complete_folders_and_only_the_newest_are_kept(tmp_path, tiny_model):
    for step in (10, 20, 30):
        save_training_checkpoint(tmp_path, step, tiny_model, {"step": step, "t": torch.arange(3)}, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [20, 30]
    latest = latest_checkpoint(tmp_path)
    assert latest.name == "step_00000030"
    assert sorted(p.name for p in latest.iterdir()) == ["config.json", "model.safetensors", STATE_NAME]
    state = load_trainer_state(latest)
    assert state["step"] == 30 and torch.equal(state["t"], torch.arange(3))
    with pytest.raises(CheckpointError, match="already exists"):
        save_training_checkpoint(tmp_path, 30, tiny_model, {"step": 30}, keep_last=2)
    assert load_trainer_state(latest)["step"] == 30
    # A crash mid-save leaves only a hidden temporary folder, which resume ignores and set-up removes.
    stale = tmp_path / "checkpoints" / ".step_00000040.tmp-abc"
    stale.mkdir()
    assert latest_checkpoint(tmp_path) == latest
    remove_stale_temporaries(tmp_path)
    assert not stale.exists()


def test_trainer_state_files_are_never_unpickled(tmp_path):
    folder = tmp_path / "ck"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format_version": 1, "x": Evil()}, folder / STATE_NAME)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_trainer_state(folder)
    (folder / STATE_NAME).write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_trainer_state(folder)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_trainer_state(tmp_path)


def test_metrics_file_truncation_and_plot(tmp_path):
    logger = MetricsLogger(tmp_path / "metrics.jsonl")
    for step in range(1, 7):
        logger.log("train", step, total=10.0 / step, align=1.0 / step, cont=5.3, back=0.0, sep=1.0,
                   lr_decoder=1e-4, lr_projector=1e-3)
    logger.log("eval", 6, miou=12.5)
    logger.log("nonfinite", 6, total=math.nan)
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"type": "train", "st')  # a torn write of a crashed run
    records = list(read_metrics(tmp_path / "metrics.jsonl"))
    assert records[-1] == {**records[-1], "type": "nonfinite", "total": "nan"}
    logger.truncate_after(4)
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]
    for step in range(5, 9):
        logger.log("train", step, total=1.0, align=0.1, cont=5.3, back=0.0, sep=1.0, lr_decoder=1e-4,
                   lr_projector=1e-3)
    logger.log("eval", 8, miou=20.0)
    png = plot_metrics(tmp_path / "metrics.jsonl", tmp_path / "plots" / "curves.png")
    with Image.open(png) as image:
        assert image.width > 100 and image.height > 100
    (tmp_path / "empty.jsonl").write_text(json.dumps({"type": "eval", "step": 1}) + "\n")
    with pytest.raises(ValueError, match="no 'train' records"):
        plot_metrics(tmp_path / "empty.jsonl", tmp_path / "x.png")
    with pytest.raises(FileNotFoundError):
        plot_metrics(tmp_path / "nothing.jsonl", tmp_path / "x.png")


def test_window_average():
    window = WindowAverage()
    window.add({"a": 1.0})
    window.add({"a": 3.0})
    assert len(window) == 2 and window.pop() == {"a": 2.0}
    assert len(window) == 0 and window.pop() == {}


def test_initial_model_loads_a_synseg_checkpoint_and_clipseg_weights(tmp_path):
    torch.manual_seed(123)
    source = create_model("tiny-test")
    save_checkpoint(source, tmp_path / "ck")
    torch.manual_seed(0)
    model = initial_model(ModelSection(config="tiny-test", init_checkpoint=str(tmp_path / "ck")))
    for name, p in model.state_dict().items():
        assert torch.equal(p, source.state_dict()[name]), name

    torch.manual_seed(7)
    donor = create_model("tiny-test")
    hf_state = {f"decoder.{k}": v.clone() for k, v in donor.decoder.state_dict().items()}
    hf_state["clip.text_model.dummy"] = torch.zeros(1)  # HF files also hold the CLIP towers: ignored
    save_file(hf_state, tmp_path / "clipseg.safetensors")
    model = initial_model(ModelSection(config="tiny-test", clipseg_weights=str(tmp_path / "clipseg.safetensors")))
    for name, p in model.decoder.state_dict().items():
        assert torch.equal(p, donor.decoder.state_dict()[name]), name
    with pytest.raises(CheckpointError, match="CLIPSeg weights not found"):
        initial_model(ModelSection(config="tiny-test", clipseg_weights=str(tmp_path / "missing.safetensors")))
