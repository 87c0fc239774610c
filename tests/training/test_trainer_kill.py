"""kill -9 in the middle of a run, then --resume in a fresh process: the same weights and the same logged losses as
an uninterrupted run, in metrics.jsonl and in the TensorBoard events. The kill comes as soon as a step is logged,
i.e. while its checkpoint is being written (a step logs before it saves), so the resumed run usually starts one
checkpoint earlier and must drop that step's records and events."""
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from synseg_core.training.state import list_checkpoints
from trainer_fixtures import REPO, TINY_CONFIG, TRAIN_SCRIPT, load_script, read_records, tiny_overrides, \
    write_caption_dataset

main = load_script("train").main
STEPS = 8
KILL_AT = 4  # kill once this step is logged
POLL_S = 0.005
TIMEOUT_S = 600


def _logged(out, step) -> bool:
    metrics = out / "metrics.jsonl"
    return metrics.is_file() and f'"type": "train", "step": {step},' in metrics.read_text()


def _tensorboard_losses(out):
    events = EventAccumulator(str(out), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("loss/total")]


@pytest.mark.slow
def test_kill_9_then_resume_matches_the_uninterrupted_run(tmp_path):
    manifest = write_caption_dataset(tmp_path / "data", count=32, seed=6)
    extra = {"checkpoint.every": 1, "checkpoint.keep_last": 3, "logging.every": 1}

    def args(out):
        return ["--config", str(TINY_CONFIG), *tiny_overrides(manifest, out, STEPS, **extra)]

    assert main(args(tmp_path / "straight")) == 0
    split = tmp_path / "split"
    proc = subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *args(split)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + TIMEOUT_S
    while not _logged(split, KILL_AT):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(POLL_S)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert KILL_AT - 1 <= list_checkpoints(split)[-1][0] < STEPS
    resumed = subprocess.run([sys.executable, str(TRAIN_SCRIPT), *args(split), "--resume"], cwd=REPO,
                             capture_output=True, text=True, timeout=TIMEOUT_S)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a = load_file(list_checkpoints(tmp_path / "straight")[-1][1] / "model.safetensors")
    b = load_file(list_checkpoints(split)[-1][1] / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    def losses(out):
        return [(r["step"], r["total"]) for r in read_records(out, "train")]
    assert losses(split) == losses(tmp_path / "straight")
    assert _tensorboard_losses(split) == _tensorboard_losses(tmp_path / "straight")
