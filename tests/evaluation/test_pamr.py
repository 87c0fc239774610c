"""PAMR against a materialised reference with convolution kernels, and its edge-following behaviour."""
import pytest
import torch
import torch.nn.functional as F

from synseg_core.evaluation.pamr import PAMRConfig, pamr_refine


def _shift_kernels(include_centre: bool, centre_minus: bool) -> torch.Tensor:
    """3x3 one-hot kernels in row-major neighbour order, as the reference PAMR builds them."""
    positions = [(r, c) for r in range(3) for c in range(3) if include_centre or (r, c) != (1, 1)]
    weight = torch.zeros(len(positions), 1, 3, 3)
    for i, (r, c) in enumerate(positions):
        if centre_minus:
            weight[i, 0, 1, 1] = 1
            weight[i, 0, r, c] = -1
        else:
            weight[i, 0, r, c] = 1
    return weight


def _local(x, kernel, dilations):
    b, k, h, w = x.shape
    x = x.reshape(b * k, 1, h, w)
    out = [F.conv2d(F.pad(x, [d] * 4, mode="replicate"), kernel, dilation=d) for d in dilations]
    return torch.cat(out, 1).reshape(b, k, -1, h, w)


def _reference_pamr(image, mask, num_iter, dilations):
    mask = F.interpolate(mask, size=image.shape[-2:], mode="bilinear", align_corners=True)
    std = _local(image, _shift_kernels(True, False), dilations).std(2, keepdim=True)
    aff = -_local(image, _shift_kernels(False, True), dilations).abs() / (1e-8 + 0.1 * std)
    aff = F.softmax(aff.mean(1, keepdim=True), 2)
    for _ in range(num_iter):
        mask = (_local(mask, _shift_kernels(False, False), dilations) * aff).sum(2)
    return mask


@pytest.mark.parametrize("dilations", [(1,), (1, 2, 4, 8, 12, 24)])
def test_matches_materialised_reference(dilations):
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 20, 27, generator=gen)
    mask = torch.rand(2, 4, 10, 14, generator=gen)
    ours = pamr_refine(image, mask, PAMRConfig(num_iter=3, dilations=dilations))
    ref = _reference_pamr(image, mask, 3, dilations)
    assert ours.shape == (2, 4, 20, 27)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_refinement_follows_an_image_edge_and_keeps_class_sums():
    h, w = 16, 32
    image = torch.zeros(1, 3, h, w)
    image[..., w // 2 :] = 1.0
    image += 0.01 * torch.rand(image.shape, generator=torch.Generator().manual_seed(1))
    # A blurry guess of the right-hand object whose 0.5 crossing sits two columns left of the edge.
    ramp = torch.linspace(0.1, 1.0, w).expand(h, w)
    masks = torch.stack([1 - ramp, ramp])[None]
    ideal = (image[0, 0] > 0.5).long()
    assert (masks[0].argmax(0) != ideal).any()
    refined = pamr_refine(image, masks)
    assert torch.equal(refined[0].argmax(0), ideal)
    # Scores flatten inside each region and jump at the edge.
    left, right = refined[0, 1, :, : w // 2], refined[0, 1, :, w // 2 :]
    assert right.min() - left.max() > 5 * max(float(left.std()), float(right.std()))
    torch.testing.assert_close(refined.sum(1), torch.ones(1, h, w))


def test_affine_colour_normalisation_does_not_change_the_result():
    gen = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 12, 12, generator=gen)
    mask = torch.rand(1, 2, 12, 12, generator=gen)
    mean, std = torch.tensor([0.48, 0.46, 0.41]).view(1, 3, 1, 1), torch.tensor([0.27, 0.26, 0.28]).view(1, 3, 1, 1)
    cfg = PAMRConfig(num_iter=2)
    torch.testing.assert_close(pamr_refine(image * 255, mask, cfg), pamr_refine((image - mean) / std, mask, cfg),
                               rtol=1e-4, atol=1e-5)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="dilations"):
        PAMRConfig(dilations=(0, 1))
    with pytest.raises(ValueError, match="num_iter"):
        PAMRConfig(num_iter=-1)
    with pytest.raises(ValueError, match=r"image \[B,3,H,W\]"):
        pamr_refine(torch.zeros(3, 4, 4), torch.zeros(1, 2, 4, 4))
