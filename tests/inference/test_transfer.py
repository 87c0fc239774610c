"""Frames up to the backend's device and results back: zero-copy on the CPU, one staging buffer each way on CUDA,
layouts and dtypes kept."""
import numpy as np
import pytest
import torch

from synseg_core.inference.transfer import frames_to_device, to_host

CPU = torch.device("cpu")
needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def frames(rng, *shapes):
    return [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in shapes]


def test_cpu_frames_are_used_in_place_when_torch_can_wrap_them(rng):
    writable, read_only = frames(rng, (5, 7), (5, 7))
    read_only.setflags(write=False)
    strided = writable[:, ::2]
    reversed_channels = writable[:, :, ::-1]
    planar = np.moveaxis(np.ascontiguousarray(np.moveaxis(writable, 2, 0)), 0, 2)
    images = [writable, read_only, strided, reversed_channels, planar]
    groups = frames_to_device(images, CPU)
    assert [members for members, _ in groups] == [[0], [1], [2], [3], [4]]
    (_, a), (_, b), (_, c), (_, d), (_, e) = groups
    for tensor, image in ((a, writable), (c, strided), (e, planar)):  # no copy, whatever the positive strides
        assert tensor.data_ptr() == image.ctypes.data and tensor[0].stride() == image.strides
    assert b.data_ptr() != read_only.ctypes.data and b.is_contiguous()  # a private copy of the read-only frame
    assert d.is_contiguous()  # negative strides: a copy torch can wrap
    for tensor, image in zip((a, b, c, d, e), images):
        assert tensor.shape == (1, *image.shape) and tensor.dtype == torch.uint8
        np.testing.assert_array_equal(tensor[0].numpy(), image)


def test_cpu_results_are_views_with_their_layout():
    hwk = torch.rand(2, 6, 4, 3)
    kwh = hwk.permute(0, 3, 1, 2)  # [N, K, H, W] in channels-last memory
    labels = torch.arange(12, dtype=torch.int32).view(3, 4)
    a, b = to_host([kwh, labels])
    assert a.shape == (2, 3, 6, 4) and np.shares_memory(a, hwk.numpy()) and b.dtype == np.int32
    np.testing.assert_array_equal(a, kwh.numpy())


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=needs_cuda)])
def test_cuda_frames_of_one_size_share_one_uploaded_buffer(rng, device):
    images = frames(rng, (5, 7), (3, 4), (5, 7))
    images[1].setflags(write=False)
    images[2] = images[2][::-1]  # strided
    groups = frames_to_device(images, torch.device(device))
    assert [members for members, _ in groups] == [[0, 2], [1]]
    storages = {t.untyped_storage().data_ptr() for _, t in groups}
    assert len(storages) == 1  # one buffer went up
    for members, tensor in groups:
        assert tensor.device.type == "cuda" and tensor.shape[0] == len(members)
        for row, i in enumerate(members):
            np.testing.assert_array_equal(tensor[row].cpu().numpy(), images[i])


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=needs_cuda)])
def test_cuda_results_come_back_together_with_dtypes_and_layouts(device):
    probs = torch.rand(2, 3, 6, 5, device=device).contiguous(memory_format=torch.channels_last)
    tensors = [probs, probs > 0.5, (probs[:, 0] * 300).to(torch.int16), probs[:, :, ::2]]  # the last: not dense
    arrays = to_host(tensors)
    for tensor, array in zip(tensors, arrays):
        np.testing.assert_array_equal(array, tensor.cpu().numpy())
        assert array.dtype == tensor.cpu().numpy().dtype
    assert arrays[0].strides == tuple(s * 4 for s in probs.stride())  # channels-last kept, no transpose on device
