"""The image path on the backend's device against the path it replaced (benchmarks/legacy_image_path.py): on the CPU
the same outputs bit for bit, for sliding windows with overlaps, whole-image mode, odd sizes, mixed-size batches
and K up to the limit; only the requested outputs come back; read-only and strided frames are accepted without
warnings; what a call returned is never reused by the next one.
"""
import dataclasses
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.legacy_image_path import legacy_segment, to_normalised_tensor
from synseg_core import Outputs, Segmenter, get_model_config
from synseg_core.config import InferenceConfig, PreprocessConfig
from synseg_core.deploy.backends.torch_backend import TorchBackend
from synseg_core.evaluation.demo_frames import read_demo_frames
from synseg_core.inference.image_path import GroupMaps, batch_outputs
from synseg_core.inference.postprocess import labels_from_probabilities, upsample
from synseg_core.inference.preprocess import normalise
from synseg_core.inference.segmenter import BUNDLED_CHECKPOINTS

CATS = ["red circle", "grass", "blue square", "sand"]


def categories(k):
    return [f"thing number {i}" for i in range(k)]


def assert_same_outputs(new, old):
    """new and old SegmentationResults are identical, dtypes included."""
    for name in ("probabilities", "confidence", "labels", "masks"):
        got, want = getattr(new, name), getattr(old, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)


def with_thresholds_inside_the_range(segmenter, image, cats):
    """Thresholds at the medians of the values, so that many pixels sit on both sides of them."""
    probs = segmenter.segment(image, cats).probabilities
    segmenter.inference = dataclasses.replace(segmenter.inference, mask_threshold=float(np.median(probs)),
                                              background_threshold=float(np.median(probs.max(0))))


def test_demo_model_on_its_frames_equals_the_old_path():
    """Trained weights on the bundled frames, with the thresholds the demo model ships with."""
    segmenter = Segmenter.from_checkpoint("demo")
    frames = read_demo_frames(BUNDLED_CHECKPOINTS["demo"].parent / "frames")
    new = segmenter.segment(frames.images, frames.query)
    for got, old in zip(new, legacy_segment(segmenter, frames.images, frames.query)):
        assert_same_outputs(got, old)


@pytest.mark.parametrize("shape", [(47, 83), (64, 64), (131, 29), (1, 5), (200, 77)])
def test_single_images_equal_the_old_path(tiny_segmenter, rng, shape):
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    with_thresholds_inside_the_range(tiny_segmenter, image, CATS)
    (old,) = legacy_segment(tiny_segmenter, [image], CATS)
    assert_same_outputs(tiny_segmenter.segment(image, CATS), old)


@pytest.mark.parametrize("inference", [
    InferenceConfig(short_side=64, window=None),  # whole image, resized to a square
    InferenceConfig(short_side=80, window=48, stride=16),  # many overlapping windows (coverage up to 9)
    InferenceConfig(short_side=64, window=64, stride=64, background=False),  # no background
])
def test_batches_of_mixed_sizes_equal_the_old_path(tiny_model, rng, inference):
    segmenter = Segmenter(tiny_model, TorchBackend(tiny_model), inference)
    images = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(40, 90, 3), (64, 64, 3), (40, 90, 3), (99, 51, 3)]]
    with_thresholds_inside_the_range(segmenter, images[0], CATS)
    new = segmenter.segment(images, CATS)
    for got, old in zip(new, legacy_segment(segmenter, images, CATS)):
        assert_same_outputs(got, old)


@pytest.mark.parametrize("k", [1, 64])  # 64: InferenceConfig's default category limit
def test_one_category_and_the_category_limit_equal_the_old_path(tiny_model, rng, k):
    segmenter = Segmenter(tiny_model, TorchBackend(tiny_model))
    assert segmenter.inference.max_categories == 64
    image = rng.integers(0, 256, (70, 45, 3), dtype=np.uint8)
    with_thresholds_inside_the_range(segmenter, image, categories(k))
    (old,) = legacy_segment(segmenter, [image], categories(k))
    assert_same_outputs(segmenter.segment(image, categories(k)), old)


@pytest.mark.slow
def test_vitb16_at_camera_size_equals_the_old_path(rng):
    """The deployed architecture (random weights: flat maps whose top two categories are often within 1e-4)."""
    cfg = get_model_config("vitb16-rd64-refined")
    cfg.backbone.pretrained = None
    torch.manual_seed(0)
    segmenter = Segmenter.from_checkpoint(cfg)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    (old,) = legacy_segment(segmenter, [image], categories(10))
    assert_same_outputs(segmenter.segment(image, categories(10)), old)


@pytest.mark.parametrize("pre", [PreprocessConfig(), PreprocessConfig(mean=(0.48145466, 0.4578275, 0.40821073),
                                                                     std=(0.26862954, 0.26130258, 0.27577711))],
                         ids=["imagenet", "clip"])
def test_normalisation_equals_the_old_path_for_every_pixel_value(rng, pre):
    image = rng.permutation(np.arange(37 * 53 * 3) % 256).astype(np.uint8).reshape(37, 53, 3)  # odd size: SIMD tails
    old = to_normalised_tensor(image, pre, torch.device("cpu"))
    assert torch.equal(normalise(torch.from_numpy(image).permute(2, 0, 1)[None], pre), old)


def test_max_batch_splits_windows_without_changing_results(tiny_model, rng):
    images = [rng.integers(0, 256, (50, 120, 3), dtype=np.uint8) for _ in range(2)]
    whole = Segmenter(tiny_model, TorchBackend(tiny_model)).segment(images, CATS)
    backend = TorchBackend(tiny_model)
    backend.max_batch = 2
    calls = []
    run = backend.run
    backend.run = lambda x, t: calls.append(len(x)) or run(x, t)
    split = Segmenter(tiny_model, backend).segment(images, CATS)
    assert max(calls) == 2 and sum(calls) == 8  # 4 windows per image
    for a, b in zip(whole, split):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_only_requested_outputs_are_returned(tiny_segmenter, rng):
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    full = tiny_segmenter.segment(image, CATS, outputs=Outputs(mask_images=True))
    assert full.mask_images.shape == (len(CATS), 37, 53) and full.mask_images.dtype == np.uint8
    assert all(plane.flags.c_contiguous for plane in full.mask_images)  # each one mono8 image as it is
    np.testing.assert_array_equal(full.mask_images, np.where(full.masks, 255, 0))
    node = tiny_segmenter.segment(image, CATS, outputs=Outputs(masks=False, probabilities=False, mask_images=True,
                                                              compact_labels=True))
    assert node.masks is None and node.probabilities is None
    assert node.labels.dtype == np.uint8
    np.testing.assert_array_equal(node.labels, full.labels)
    np.testing.assert_array_equal(node.mask_images, full.mask_images)
    np.testing.assert_array_equal(node.confidence, full.confidence)
    labels_only = tiny_segmenter.segment(image, CATS, outputs=Outputs(masks=False, confidence=False))
    assert labels_only.confidence is None and labels_only.masks is None and labels_only.mask_images is None
    assert tiny_segmenter.segment(image, CATS, probabilities=False).probabilities is None


def test_compact_labels_above_255_categories_are_uint16():
    maps = torch.rand(2, 300, 9, 7, generator=torch.Generator().manual_seed(0))
    groups = [GroupMaps([1, 0], (20, 30), maps)]
    (second, first) = batch_outputs(groups, 0.5, 0.5, Outputs(compact_labels=True))
    reference = labels_from_probabilities(upsample(maps, (20, 30)).clamp(0, 1), 0.5, 0.5)
    assert first["labels"].dtype == np.uint16 and first["labels"].max() > 255
    np.testing.assert_array_equal(first["labels"], reference.labels[0].numpy())
    np.testing.assert_array_equal(second["labels"], reference.labels[1].numpy())
    np.testing.assert_array_equal(first["masks"], reference.masks[0].numpy())


def test_read_only_and_strided_frames_are_accepted_without_warnings(tiny_segmenter, rng):
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    expected = tiny_segmenter.segment(image, CATS)
    pil = np.asarray(Image.fromarray(image))
    assert not pil.flags.writeable
    flipped = np.ascontiguousarray(image[:, ::-1])[:, ::-1]  # a negative-stride view of the same pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for frame in (pil, flipped, np.broadcast_to(image, (2, *image.shape))[0]):
            got = tiny_segmenter.segment(frame, CATS)
            np.testing.assert_array_equal(got.labels, expected.labels)
            np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=1e-6)
    assert not pil.flags.writeable and np.array_equal(pil, image)  # the input is never written


def test_segment_probabilities_equal_segment(tiny_segmenter, rng):
    images = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(33, 70, 3), (64, 64, 3)]]
    probs = tiny_segmenter.segment_probabilities(images, CATS)
    for p, r in zip(probs, tiny_segmenter.segment(images, CATS)):
        assert isinstance(p, torch.Tensor) and p.shape == r.probabilities.shape
        np.testing.assert_array_equal(p.numpy(), r.probabilities)


needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("graphs", [pytest.param(g, marks=needs_cuda) for g in (False, True)])
def test_cuda_path_equals_the_cpu_path(tiny_model, rng, graphs):
    cpu = Segmenter(tiny_model, TorchBackend(tiny_model))
    images = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(47, 83, 3), (64, 64, 3), (47, 83, 3)]]
    wanted = Outputs(mask_images=True)
    on_cpu = cpu.segment(images, CATS, outputs=wanted)
    cuda_model = type(tiny_model)(tiny_model.cfg)
    cuda_model.load_state_dict(tiny_model.state_dict())
    gpu = Segmenter(cuda_model, TorchBackend(cuda_model, "cuda", cuda_graphs=graphs))
    for _ in range(2):  # the second call replays the captured graphs
        on_gpu = gpu.segment(images, CATS, outputs=wanted)
        for a, b in zip(on_gpu, on_cpu):
            np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4)
            np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-4)
            assert (a.labels != b.labels).mean() < 0.01 and (a.mask_images != b.mask_images).mean() < 0.01
            assert a.labels.dtype == np.int32 and a.mask_images.dtype == np.uint8
    assert gpu.backend.cuda_graphs == graphs


def test_results_of_one_call_are_not_reused_by_the_next(tiny_segmenter, rng):
    """Intermediates are kept between calls (the workspace); what a call returned must stay as it was. 64x96 needs
    no resize and two windows: the averaged maps themselves would be the probabilities if they were not copied."""
    a, b = (rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(2))
    wanted = Outputs(mask_images=True)
    first = tiny_segmenter.segment(a, CATS, outputs=wanted)
    kept = {name: getattr(first, name).copy() for name in wanted.names()}
    probs = tiny_segmenter.segment_probabilities([a], CATS)[0]
    probs_kept = probs.clone()
    tiny_segmenter.segment(b, CATS, outputs=wanted)
    tiny_segmenter.segment_probabilities([b], CATS)
    for name, value in kept.items():
        np.testing.assert_array_equal(getattr(first, name), value)
    torch.testing.assert_close(probs, probs_kept, rtol=0, atol=0)
