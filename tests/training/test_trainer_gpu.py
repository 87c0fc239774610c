"""The CUDA path: fp16 autocast with a gradient scaler and the frozen CLIP stored in fp16 (skipped without CUDA)."""
import pytest
import torch

from synseg_core.training.state import list_checkpoints, load_trainer_state
from trainer_fixtures import TINY_CONFIG, load_script, read_records, tiny_overrides, write_caption_dataset

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

main = load_script("train").main


def test_fp16_training_on_cuda_with_a_grad_scaler(tmp_path):
    manifest = write_caption_dataset(tmp_path / "data", count=32, seed=6)
    out = tmp_path / "run"
    args = ["--config", str(TINY_CONFIG), *tiny_overrides(manifest, out, 6, **{
        "runtime.device": "cuda", "runtime.precision": "auto", "logging.every": 2, "checkpoint.every": 3})]
    assert main([*args, "--stop-at", "3"]) == 0
    assert main([*args, "--resume"]) == 0
    train = read_records(out, "train")
    assert all(r["grad_scale"] > 0 for r in train) and all(r["total"] == r["total"] for r in train)
    state = load_trainer_state(list_checkpoints(out)[-1][1])
    assert state["step"] == 6 and state["scaler"]["scale"] > 0  # the scaler's state is checkpointed
    assert read_records(out, "summary")[-1]["nonfinite_steps"] == 0
