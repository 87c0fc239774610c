"""A 2-process DistributedDataParallel run with gloo on CPU through torchrun."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from synseg_core.training import load_train_config
from synseg_core.training.run import initial_model, seed_everything
from trainer_fixtures import REPO, TINY_CONFIG, read_records, tiny_overrides, write_caption_dataset

DRIVER = Path(__file__).with_name("ddp_driver.py")
STEPS = 12
NAN_STEP = 5  # rank 1 alone sees a NaN loss here


@pytest.mark.slow
def test_two_gloo_ranks_stay_identical_skip_bad_steps_together_and_the_loss_decreases(tmp_path):
    manifest = write_caption_dataset(tmp_path / "data", count=48, seed=2)
    out = tmp_path / "run"
    overrides = tiny_overrides(manifest, out, STEPS, **{"loader.batch_size": 4, "logging.every": 3,
                                                       "checkpoint.every": 6})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(DRIVER),
           str(TINY_CONFIG), str(tmp_path), str(NAN_STEP), *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "cpu (fp32, 2 rank(s))" in proc.stderr

    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert rank0.keys() == rank1.keys() and all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    cfg = load_train_config(TINY_CONFIG, overrides)
    seed_everything(cfg.seed)
    start = initial_model(cfg.model).trainable_parameters()
    assert any(not torch.equal(rank0[k], v.detach()) for k, v in start.items())  # it did train

    train = read_records(out, "train")  # rank 0 alone logs (averaged over ranks) and checkpoints
    assert [r["step"] for r in train] == [3, 6, 9, 12]
    assert train[-1]["total"] < train[0]["total"]
    summary = read_records(out, "summary")
    assert len(summary) == 1 and summary[0]["nonfinite_steps"] == 1
    assert [r["step"] for r in read_records(out, "nonfinite")] == [NAN_STEP]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000006", "step_00000012"]
    final = load_file(out / "checkpoints" / "step_00000012" / "model.safetensors")
    assert all(torch.equal(final[k], rank0[k]) for k in rank0)
