"""The fused CPU post-processing (numba) must give exactly the outputs of the separate torch ops, for every output
combination, upsampling and downsampling, batches, K past the uint8 label limit, ties, overshoots and NaN; and where
it cannot be used (numba missing, a torch build that rounds differently) post-processing must fall back to the torch
ops, saying why."""
import logging
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from synseg_core import inference
from synseg_core.inference import postprocess as pp
from synseg_core.inference import fused_postprocess as fused
from synseg_core.inference.postprocess import Outputs, postprocess

OUTPUT_SETS = [Outputs(), Outputs(compact_labels=True), Outputs.for_images(),
               Outputs.for_images(masks=False, confidence=False), Outputs(labels=False, probabilities=False),
               Outputs(labels=False, masks=False, confidence=False, probabilities=False, mask_images=True)]


def torch_ops(monkeypatch, *args) -> dict[str, torch.Tensor]:
    with monkeypatch.context() as m:
        m.setattr(pp, "fused_kernel_serves", lambda maps, size: False)
        return postprocess(*args)


def assert_same(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys(), what
    for name in want:
        assert got[name].dtype == want[name].dtype, f"{name}: {what}"
        # equal_nan: NaN where the torch ops give NaN, nowhere else
        np.testing.assert_array_equal(got[name].numpy(), want[name].numpy(), err_msg=f"{name}: {what}")


def probabilities(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Sigmoid-like maps overshooting [0, 1] a little, with exact ties (a coarse block), one NaN pixel and pixels
    where every category is negative or above 1."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(shape, generator=g) * 1.25 - 0.125
    maps[..., :3, :4] = torch.randint(-1, 5, (*shape[:-2], 3, 4), generator=g).float() / 4
    maps[0, :, -1, -1] = -torch.rand(shape[1], generator=g)
    maps[-1, :, -2, 0] = 1 + torch.rand(shape[1], generator=g)
    maps[0, shape[1] // 2, 1, -2] = float("nan")
    return maps


@pytest.mark.parametrize("shape,size", [((1, 10, 448, 592), (480, 640)), ((2, 3, 61, 89), (97, 123)),
                                        ((1, 4, 120, 150), (73, 91)), ((2, 2, 7, 150), (7, 301))],
                         ids=["camera", "batch-odd", "downsampled", "one-axis"])
def test_fused_outputs_equal_the_torch_ops(monkeypatch, shape, size):
    assert pp.fused_kernel_serves(torch.zeros(shape), size), "the fused kernel is not used here (numba missing?)"
    maps = probabilities(sum(shape), shape)
    for outputs in OUTPUT_SETS:
        for background, mask in [(None, 0.5), (0.0, 0.0), (0.3, 0.1), (-0.25, 1.0), (0.999, -0.1), (None, 1.2)]:
            want = torch_ops(monkeypatch, maps.clone(), size, background, mask, outputs)
            assert_same(postprocess(maps.clone(), size, background, mask, outputs), want,
                        f"{outputs}, background {background}, mask threshold {mask}")


def test_channels_last_maps_keep_the_torch_ops(monkeypatch):
    """aten resizes channels-last maps with its vectorised kernel: the kernel must not stand in for it there."""
    maps = probabilities(5, (1, 10, 61, 89)).contiguous(memory_format=torch.channels_last)
    assert not pp.fused_kernel_serves(maps, (97, 123))
    assert_same(postprocess(maps.clone(), (97, 123), 0.3, 0.5, Outputs()),
                torch_ops(monkeypatch, maps.clone(), (97, 123), 0.3, 0.5, Outputs()), "channels-last")


def test_many_categories_rely_on_a_check_with_fewer(monkeypatch):
    """The check against aten runs with at most DECISIVE_CATEGORY_COUNT + 1 maps; 40 categories at camera size must
    still come out equal to the torch ops."""
    maps = probabilities(40, (1, 40, 448, 592))
    for outputs in (Outputs(), Outputs.for_images()):
        assert_same(postprocess(maps.clone(), (480, 640), 0.3, 0.5, outputs),
                    torch_ops(monkeypatch, maps.clone(), (480, 640), 0.3, 0.5, outputs), f"K=40, {outputs}")


def test_fused_labels_past_255_categories_are_int16(monkeypatch):
    maps = probabilities(1, (1, 300, 6, 7))
    outputs = Outputs.for_images()
    got = postprocess(maps.clone(), (11, 9), 0.2, 0.5, outputs)
    assert got["labels"].dtype == torch.int16 and int(got["labels"].max()) > 255
    assert_same(got, torch_ops(monkeypatch, maps.clone(), (11, 9), 0.2, 0.5, outputs), "K=300")


@pytest.mark.parametrize("threads", [1, 3])
def test_bands_and_concurrent_calls_give_the_same_outputs(monkeypatch, threads):
    """Also with K=3 on one thread, where aten itself switches to another kernel (the torch ops' rounding depends on
    the thread count, so the fused outputs are compared with theirs at the same count)."""
    maps = [probabilities(seed, (2, k, 60, 81)) for seed, k in enumerate((5, 3, 1, 10))]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        want = [torch_ops(monkeypatch, m.clone(), (97, 100), 0.3, 0.5, Outputs()) for m in maps]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda m: postprocess(m.clone(), (97, 100), 0.3, 0.5, Outputs()), maps * 3))
    finally:
        torch.set_num_threads(previous)
    for i, result in enumerate(got):
        assert_same(result, want[i % len(maps)], f"call {i}, {threads} threads")


def assert_falls_back(monkeypatch, caplog, reason: str) -> None:
    """The fused kernel is not used, the log says `reason`, and the outputs are the torch ops'."""
    with caplog.at_level(logging.INFO):
        assert not pp.fused_kernel_serves(torch.zeros(1, 2, 61, 89), (97, 123))
    assert reason in caplog.text
    maps = probabilities(3, (1, 2, 61, 89))
    want = torch_ops(monkeypatch, maps.clone(), (97, 123), 0.3, 0.5, Outputs())
    assert_same(postprocess(maps.clone(), (97, 123), 0.3, 0.5, Outputs()), want, reason)


def test_a_build_that_rounds_differently_keeps_the_torch_ops(monkeypatch, caplog):
    real = fused.source_indices

    def shifted(source: int, target: int):
        first, second, w0, w1 = real(source, target)
        return first, second, np.nextafter(w0, np.float32(0)), w1

    fused._matches_aten.cache_clear()
    monkeypatch.setattr(fused, "source_indices", shifted)
    try:
        assert_falls_back(monkeypatch, caplog,
                          "does not reproduce this torch build's bilinear resize (61, 89) -> (97, 123) of 2 maps")
    finally:
        fused._matches_aten.cache_clear()


def test_without_numba_post_processing_runs_the_torch_ops(monkeypatch, caplog):
    pp._fused.cache_clear()
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    monkeypatch.delitem(sys.modules, "synseg_core.inference.fused_postprocess")
    monkeypatch.delattr(inference, "fused_postprocess")
    try:
        assert_falls_back(monkeypatch, caplog,
                          "fused CPU post-processing unavailable (ModuleNotFoundError: import of numba halted")
    finally:
        pp._fused.cache_clear()


def test_source_indices_are_atens_sampling():
    """The kernel's indices and weights against aten's own: upsampling one-hot rows gives each weight exactly."""
    for source, target in [(592, 640), (448, 480), (480, 448), (17, 33), (100, 37), (5, 5)]:
        eye = torch.eye(source).view(source, 1, 1, source)
        want = torch.nn.functional.interpolate(eye, size=(1, target), mode="bilinear", align_corners=False)
        first, second, w0, w1 = fused.source_indices(source, target)
        got = np.zeros((source, target), np.float32)
        np.add.at(got, (first, np.arange(target)), w0)
        np.add.at(got, (second, np.arange(target)), w1)
        np.testing.assert_array_equal(got, want[:, 0, 0].numpy(), err_msg=f"{source} -> {target}")
