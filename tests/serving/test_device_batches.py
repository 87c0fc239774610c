"""A multi-camera batch on a GPU: the frames go up in one copy and the results come back in one pass of copies with
one wait; the batch's results equal each frame segmented alone. Checked with the CUDA profiler's copy records."""
import numpy as np
import pytest
import torch

from synseg_core import Outputs, Segmenter
from synseg_core.deploy.backends.torch_backend import TorchBackend
from synseg_core.serving.scheduling import BatchScheduler

CATS = ["red circle", "grass", "blue square"]
NODE_OUTPUTS = Outputs.for_images()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def assert_close_results(a, b):
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)
    assert (a.labels != b.labels).mean() < 0.01 and (a.mask_images != b.mask_images).mean() < 0.01


def copies(profile, kind: str) -> int:
    return sum(1 for event in profile.events() if event.name.startswith(f"Memcpy {kind}"))


def test_three_cameras_go_up_in_one_copy_and_come_back_together(tiny_model, rng):
    segmenter = Segmenter(tiny_model, TorchBackend(tiny_model, "cuda"))
    frames = [rng.integers(0, 256, (47, 83, 3), dtype=np.uint8) for _ in range(3)]
    segmenter.segment(frames, CATS, outputs=NODE_OUTPUTS)  # warm-up: constants uploaded, graphs captured
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        batched = segmenter.segment(frames, CATS, outputs=NODE_OUTPUTS)
    assert copies(profile, "HtoD") == 1
    assert copies(profile, "DtoH") == len(NODE_OUTPUTS.names())  # one per output for the whole batch
    for frame, result in zip(frames, batched):  # GPU kernels may round differently for another batch size
        assert_close_results(result, segmenter.segment(frame, CATS, outputs=NODE_OUTPUTS))


def test_the_scheduler_hands_the_batch_to_one_call(tiny_model, rng):
    segmenter = Segmenter(tiny_model, TorchBackend(tiny_model, "cuda"))
    frames = {f"cam{i}": rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for i in range(3)}
    calls, results = [], {}

    def process(batch):
        calls.append(len(batch))
        out = segmenter.segment([frame for _, frame in batch], CATS, outputs=NODE_OUTPUTS)
        results.update({name: r for (name, _), r in zip(batch, out)})

    scheduler = BatchScheduler(process, list(frames), batch_window_s=5.0)
    scheduler.start()
    for name, frame in frames.items():
        scheduler.submit(name, frame)
    assert scheduler.wait_idle(timeout=60)
    scheduler.stop()
    assert calls == [3]
    for name, frame in frames.items():
        assert_close_results(results[name], segmenter.segment(frame, CATS, outputs=NODE_OUTPUTS))
