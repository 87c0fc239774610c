"""Post-processing skips clamping every map unless the probabilities are returned; its outputs must still be those
of the clamped maps under the old path's rules (clamp, `max(dim)`, background where the best is at most the
threshold, masks above the mask threshold), including overshoots past 0 and 1, ties at 0 and 1, pixels whose
every category is negative, thresholds outside [0, 1) and maps that need no resize."""
import numpy as np
import pytest
import torch

from synseg_core.inference.postprocess import Outputs, labels_from_probabilities, postprocess, upsample
from synseg_core.inference.workspace import Workspace


def reference(maps: torch.Tensor, size, background_threshold, mask_threshold):
    """The old path's rules on the clamped, upsampled maps."""
    probs = upsample(maps, size).clamp(0, 1)
    confidence, best = probs.max(dim=1)
    labels = (best + 1).to(torch.int32)
    if background_threshold is not None:
        labels = torch.where(confidence <= background_threshold, torch.zeros_like(labels), labels)
    return {"probabilities": probs, "confidence": confidence, "labels": labels, "masks": probs > mask_threshold}


def awkward_maps(seed: int, shape=(2, 5, 9, 11)) -> torch.Tensor:
    """Values in [-0.5, 1.5] on a coarse grid (so upsampled categories tie, at 0, at 1 and between), with one
    pixel where every category is negative and one where every category is above 1."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.randint(-2, 7, shape, generator=g).float() / 4
    maps[0, :, 0, 0] = -torch.rand(shape[1], generator=g)
    maps[1, :, 2, 3] = 1 + torch.rand(shape[1], generator=g)
    return maps


@pytest.mark.parametrize("size", [(20, 23), (9, 11)], ids=["upsampled", "no resize"])
@pytest.mark.parametrize("background_threshold", [None, 0.0, 0.5, -0.25, 0.999])
@pytest.mark.parametrize("mask_threshold", [0.0, 0.5, -0.1, 1.0, 1.2])
def test_outputs_equal_those_of_the_clamped_maps(size, background_threshold, mask_threshold):
    for seed in range(3):
        maps = awkward_maps(seed)
        want = reference(maps, size, background_threshold, mask_threshold)
        for outputs in (Outputs(), Outputs.for_images(), Outputs.for_images(masks=False, confidence=False)):
            got = postprocess(maps.clone(), size, background_threshold, mask_threshold, outputs, Workspace())
            for name, value in got.items():
                if name == "mask_images":
                    np.testing.assert_array_equal(value.numpy(), want["masks"].numpy().astype(np.uint8) * 255)
                else:
                    np.testing.assert_array_equal(value.numpy(), want[name].numpy().astype(value.numpy().dtype),
                                                  err_msg=f"{name}, {outputs}")


def test_labels_from_probabilities_take_the_first_of_tied_categories_at_zero_and_one():
    probs = torch.tensor([[[-0.2, 1.3]], [[-0.1, 1.1]], [[-0.3, 0.9]]]).view(3, 1, 2)  # K=3, one row of 2 pixels
    labelled = labels_from_probabilities(probs, background_threshold=None, mask_threshold=0.5)
    assert labelled.labels.tolist() == [[1, 1]]  # every category clamps to 0 (left) and two clamp to 1 (right)
    assert labelled.confidence.tolist() == [[0.0, 1.0]]
    with_background = labels_from_probabilities(probs, background_threshold=0.0, mask_threshold=0.5)
    assert with_background.labels.tolist() == [[0, 1]]
