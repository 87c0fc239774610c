"""Resume exactness: 2N steps in one go == N steps, then a FRESH PROCESS resuming for N more (CPU, bit-exact)."""
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from synseg_core.training.state import list_checkpoints, load_trainer_state
from trainer_fixtures import REPO, TINY_CONFIG, TRAIN_SCRIPT, load_script, read_records, tiny_overrides, \
    write_caption_dataset

main = load_script("train").main
N = 4  # 48 samples / batch 8 = 6 batches an epoch: the resumed half crosses an epoch boundary


@pytest.mark.slow
def test_resumed_run_in_a_fresh_process_matches_the_straight_run(tmp_path):
    manifest = write_caption_dataset(tmp_path / "data", count=48, seed=1)
    # Absent pairs and a DataLoader worker on, so their randomness is part of what must resume exactly.
    extra = {"checkpoint.every": N, "logging.every": 1, "loader.num_workers": 1,
             "model.overrides.loss.absent_weight": 0.5}

    def args(out):
        return ["--config", str(TINY_CONFIG), *tiny_overrides(manifest, out, 2 * N, **extra)]

    assert main(args(tmp_path / "straight")) == 0
    assert main([*args(tmp_path / "split"), "--stop-at", str(N)]) == 0
    assert [s for s, _ in list_checkpoints(tmp_path / "split")] == [N]
    proc = subprocess.run([sys.executable, str(TRAIN_SCRIPT), *args(tmp_path / "split"), "--resume"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resumed from {tmp_path / 'split' / 'checkpoints' / 'step_00000004'} at step {N}" in proc.stderr

    straight = list_checkpoints(tmp_path / "straight")[-1][1]
    split = list_checkpoints(tmp_path / "split")[-1][1]
    assert straight.name == split.name == f"step_{2 * N:08d}"
    a, b = load_file(straight / "model.safetensors"), load_file(split / "model.safetensors")
    assert a.keys() == b.keys()
    trainable = [k for k in a if not k.startswith("backbone.")]
    assert trainable and all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    state_a, state_b = load_trainer_state(straight), load_trainer_state(split)
    assert state_a["data"] == state_b["data"] == {"epoch": 1, "batches": 2}
    exp_avg = [(state_a["optimizer"]["state"][i]["exp_avg"], state_b["optimizer"]["state"][i]["exp_avg"])
               for i in state_a["optimizer"]["state"]]
    assert all(torch.equal(x, y) for x, y in exp_avg)
    # The resumed half logged the very same losses, step by step (and nothing twice).
    def losses(out):
        return [(r["step"], r["total"], r["absent"]) for r in read_records(out, "train")]
    assert losses(tmp_path / "split") == losses(tmp_path / "straight")
    assert all(r["absent"] > 0 for r in read_records(tmp_path / "straight", "train"))
