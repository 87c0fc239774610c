"""The protocol pieces evaluation relies on: sliding-window averaging (against mmseg's slide rule, written out
independently here) and background-threshold labelling on a hand-made example."""
import numpy as np
import pytest
import torch

from synseg_core.inference.preprocess import WindowLayout, average_windows, extract_windows, run_windows
from synseg_core.inference.postprocess import labels_from_probabilities


def sliding_window_probabilities(images, run, window, stride, max_batch=None):
    """[K, H_i, W_i] per image: the image path's window pieces (layout, cut, batched run, average) composed as
    `image_path.window_maps` composes them, on float images of any size and value."""
    groups = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape[-2:]), []).append(i)
    layouts = [WindowLayout.plan(size, window, stride) for size in groups]
    windows = [extract_windows(torch.stack([images[i] for i in members]), layout)
               for members, layout in zip(groups.values(), layouts)]
    probs = run_windows(torch.cat(windows), run, max_batch)
    out, start = [None] * len(images), 0
    for members, layout, group in zip(groups.values(), layouts, windows):
        maps = average_windows(probs[start:start + len(group)], len(members), layout)
        start += len(group)
        for row, i in enumerate(members):
            out[i] = maps[row]
    return out


def _mmseg_slide_boxes(h, w, crop, stride):
    """mmseg EncoderDecoder.slide_inference's window grid, transcribed loop by loop."""
    h_grids = max(h - crop + stride - 1, 0) // stride + 1
    w_grids = max(w - crop + stride - 1, 0) // stride + 1
    boxes = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * stride, w_idx * stride
            y2, x2 = min(y1 + crop, h), min(x1 + crop, w)
            boxes.append((max(y2 - crop, 0), max(x2 - crop, 0)))
    return boxes


@pytest.mark.parametrize("sizes,window,stride,max_batch", [
    ([(13, 29)], 8, 3, None),
    ([(8, 8), (20, 11), (9, 31)], 8, 5, 4),  # several images share batches of at most 4 windows
    ([(16, 16)], 8, 8, 1),  # no overlap
])
def test_every_pixel_is_the_mean_of_the_windows_covering_it(sizes, window, stride, max_batch):
    images = [torch.zeros(3, h, w) for h, w in sizes]
    seen = []

    def run(windows):
        # Window i of the whole call sequence answers the constant i + 1 on channel 0 and 1 on channel 1.
        start = sum(s for s in seen)
        seen.append(windows.shape[0])
        ids = torch.arange(start + 1, start + windows.shape[0] + 1, dtype=torch.float32).view(-1, 1, 1, 1)
        return torch.cat([ids.expand(-1, 1, window, window), torch.ones(windows.shape[0], 1, window, window)], 1)

    probs = sliding_window_probabilities(images, run, window, stride, max_batch)
    if max_batch:
        assert max(seen) <= max_batch
    window_id = 0
    for (h, w), p in zip(sizes, probs):
        total, count = np.zeros((h, w)), np.zeros((h, w))
        for y, x in _mmseg_slide_boxes(h, w, window, stride):
            window_id += 1
            total[y:y + window, x:x + window] += window_id
            count[y:y + window, x:x + window] += 1
        assert count.min() >= 1  # every pixel covered
        np.testing.assert_allclose(p[0].numpy(), total / count, rtol=1e-6)
        np.testing.assert_allclose(p[1].numpy(), 1.0)  # averaging, not summing
    assert window_id == sum(seen)


def test_windows_that_copy_their_input_reproduce_the_image_exactly():
    image = torch.rand(3, 23, 37, generator=torch.Generator().manual_seed(0))
    (probs,) = sliding_window_probabilities([image], lambda x: x.clone(), window=16, stride=6)
    torch.testing.assert_close(probs, image, rtol=0, atol=1e-6)


# Two categories over a 2 x 4 image; the background threshold is 0.4.
PROBS = np.array([
    [[0.9, 0.3, 0.40, 0.2], [0.5, 0.41, 0.1, 0.6]],
    [[0.1, 0.8, 0.39, 0.2], [0.5, 0.39, 0.0, 0.7]],
], dtype=np.float32)


def test_background_threshold_labels_a_constructed_example():
    out = labels_from_probabilities(PROBS, background_threshold=0.4, mask_threshold=0.5)
    # best <= 0.4 is background (TCL's constant score wins ties); ties between categories go to the first.
    np.testing.assert_array_equal(out.labels.numpy(), [[1, 2, 0, 0], [1, 1, 0, 2]])
    np.testing.assert_allclose(out.confidence.numpy(), [[0.9, 0.8, 0.40, 0.2], [0.5, 0.41, 0.1, 0.7]])
    np.testing.assert_array_equal(out.masks.numpy(), PROBS > 0.5)


def test_without_background_every_pixel_gets_its_best_category():
    out = labels_from_probabilities(torch.from_numpy(PROBS), background_threshold=None, mask_threshold=0.5)
    np.testing.assert_array_equal(out.labels.numpy(), [[1, 2, 1, 1], [1, 1, 1, 2]])
