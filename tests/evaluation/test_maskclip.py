"""MaskCLIP baseline: value-path features against torch's own attention with self-only attention, and the backend."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from synseg_core import Segmenter, get_model_config
from synseg_core.config import InferenceConfig, PreprocessConfig
from synseg_core.evaluation.maskclip import MaskClipBackend, clip_normalisation, dense_clip_features
from synseg_core.inference.preprocess import normalise
from synseg_core.model.synseg import SynSeg


def _reference_features(backbone, images):
    """Run every block but the last normally, then the last block's attention restricted to each token itself
    (an additive mask of -inf off the diagonal), which leaves exactly the value path out_proj(v(ln_1(x)))."""
    visual = backbone.clip.visual
    x = backbone.embed_image(images)
    *early, last = visual.transformer.resblocks
    for block in early:
        x = block(x)
    n = x.shape[1]
    self_only = torch.full((n, n), float("-inf")).fill_diagonal_(0.0)
    h = last.ln_1(x)
    if isinstance(last.attn, torch.nn.MultiheadAttention):  # open_clip's "default" block
        y = last.attn(h, h, h, need_weights=False, attn_mask=self_only)[0]
    else:  # open_clip's "custom" (SDPA) block
        y = last.attn(h, attn_mask=self_only)
    y = visual.ln_post(y[:, 1:]) @ visual.proj
    gh, gw = backbone.grid_size(*images.shape[-2:])
    return y.transpose(1, 2).reshape(images.shape[0], -1, gh, gw)


@pytest.mark.parametrize("vision_block", ["custom", "default"])
def test_dense_features_are_the_last_block_value_path(vision_block):
    cfg = get_model_config("tiny-test")
    cfg.backbone.vision_block = vision_block
    backbone = SynSeg(cfg).backbone
    images = torch.randn(2, 3, 48, 80, generator=torch.Generator().manual_seed(0))
    ours = dense_clip_features(backbone, images)
    assert ours.shape == (2, backbone.embed_dim, 3, 5)
    torch.testing.assert_close(ours, _reference_features(backbone, images), rtol=1e-4, atol=1e-5)


def test_backend_gives_softmax_probabilities_at_input_size(tiny_model):
    backend = MaskClipBackend(tiny_model)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    text = torch.randn(5, tiny_model.backbone.embed_dim, generator=torch.Generator().manual_seed(2))
    probs = backend.run(images, text)
    assert probs.shape == (2, 5, 64, 64)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 64, 64))
    # Softmax over categories of CLIP-scaled cosine similarity, computed on images normalised for CLIP.
    mean, std = clip_normalisation(tiny_model.backbone)
    pre, clip_pre = tiny_model.cfg.preprocess, PreprocessConfig(mean=mean, std=std)
    clip_images = (images * torch.tensor(pre.std).view(1, 3, 1, 1) + torch.tensor(pre.mean).view(1, 3, 1, 1)
                   - torch.tensor(clip_pre.mean).view(1, 3, 1, 1)) / torch.tensor(clip_pre.std).view(1, 3, 1, 1)
    cos = torch.einsum("bdhw,kd->bkhw", F.normalize(dense_clip_features(tiny_model.backbone, clip_images), dim=1),
                       F.normalize(text, dim=-1))
    expected = (cos * tiny_model.backbone.clip.logit_scale.exp()).softmax(1)
    torch.testing.assert_close(probs, F.interpolate(expected, size=(64, 64), mode="bilinear"), rtol=1e-4, atol=1e-5)


def test_renormalisation_matches_normalising_with_clip_statistics(tiny_model):
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    mean, std = clip_normalisation(tiny_model.backbone)
    backend = MaskClipBackend(tiny_model)
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None]
    model_norm = normalise(pixels, tiny_model.cfg.preprocess)
    clip_norm = normalise(pixels, PreprocessConfig(mean=mean, std=std))
    torch.testing.assert_close(backend._renormalise(model_norm), clip_norm, rtol=1e-5, atol=1e-5)


def test_segmenter_runs_the_baseline_end_to_end(tiny_model):
    seg = Segmenter(tiny_model, MaskClipBackend(tiny_model), InferenceConfig(short_side=64, window=64, stride=32))
    img = np.random.default_rng(1).integers(0, 256, (50, 90, 3), dtype=np.uint8)
    result = seg.segment(img, ["cat", "dog", "grass"])
    assert result.probabilities.shape == (3, 50, 90)
    np.testing.assert_allclose(result.probabilities.sum(0), 1.0, atol=1e-5)
