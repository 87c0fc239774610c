"""Model wiring: gradients, frozen backbone, tower stopping early, any input size, FSS sources."""
import pytest
import torch

from synseg_core import get_model_config
from synseg_core.model.synseg import SynSeg
from synseg_core.training.losses import synseg_loss


def _batch(model):
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 64)
    owner = torch.tensor([0, 0, 0, 1, 1])
    text = model.text_embeddings(["red circle", "grass", "sky", "blue square", "water"])
    return images, text, owner


@pytest.mark.parametrize("source", ["film_output", "unconditioned", "decoder_tokens"])
def test_gradients_reach_trainable_parts_only(source):
    cfg = get_model_config("tiny-test")
    cfg.synergy.source = source
    # A random decoder starts with every cosine outside the clip range for the unconditioned source (the spec's
    # clamp-saturation pitfall), so the hard clamp would legitimately pass no gradient; test the wiring with the
    # straight-through clamp.
    cfg.loss.clamp = "straight_through"
    model = SynSeg(cfg).train()
    images, text, owner = _batch(model)
    out = model.forward_train(images, text, owner)
    synseg_loss(out, text, owner, images.shape[0], cfg.loss).total.backward()
    for name, p in model.named_parameters():
        if name.startswith("backbone."):
            assert not p.requires_grad and p.grad is None, name
    grads = {n: p.grad for n, p in model.trainable_parameters().items()}
    for prefix in ("decoder.film_mul", "decoder.film_add", "decoder.layers.0", "decoder.transposed_convolution",
                   "synergy.projector"):
        assert any(n.startswith(prefix) and g is not None and torch.count_nonzero(g) > 0 for n, g in grads.items()), \
            prefix
    assert model.backbone.training is False  # frozen CLIP stays in eval mode


def test_tower_stops_after_deepest_extracted_block(tiny_model):
    calls = []
    blocks = tiny_model.backbone.clip.visual.transformer.resblocks
    hooks = [b.register_forward_hook(lambda m, i, o, k=k: calls.append(k)) for k, b in enumerate(blocks)]
    tiny_model.backbone.encode_image_layers(torch.randn(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert calls == [0, 1, 2]  # extract_layers (0, 1, 2) of 4 blocks: block 3 never runs


def test_any_input_size_interpolates_positions(tiny_model):
    probs = tiny_model(torch.randn(1, 3, 96, 128), tiny_model.text_embeddings(["a", "b"]))
    assert probs.shape == (1, 2, 96, 128)
    assert float(probs.min()) >= 0 and float(probs.max()) <= 1
    with pytest.raises(ValueError, match="multiple of the patch size"):
        tiny_model(torch.randn(1, 3, 70, 64), tiny_model.text_embeddings(["a"]))


def test_text_cache_reuses_embeddings(tiny_model, monkeypatch):
    first = tiny_model.text_embeddings(["cat", "dog"])
    calls = []
    original = tiny_model.backbone.encode_text
    monkeypatch.setattr(tiny_model.backbone, "encode_text", lambda p: calls.append(list(p)) or original(p))
    again = tiny_model.text_embeddings(["dog", "cat", "bird"])
    assert calls == [["a photo of a bird."]]
    torch.testing.assert_close(again[0], first[1])


def test_bad_extract_layers():
    cfg = get_model_config("tiny-test")
    cfg.backbone.extract_layers = (2, 7)
    from synseg_core import ConfigError

    with pytest.raises(ConfigError, match="extract_layers"):
        SynSeg(cfg)


def test_refined_upsampler_needs_patch_16():
    from synseg_core.model.decoder import build_upsampler

    assert build_upsampler("refined", 16, 16)(torch.zeros(1, 16, 2, 3)).shape == (1, 1, 32, 48)
    assert build_upsampler("simple", 16, 32)(torch.zeros(1, 16, 2, 3)).shape == (1, 1, 64, 96)
    with pytest.raises(ValueError, match="needs patch size 16.*'simple'"):
        build_upsampler("refined", 16, 32)


def test_vision_block_types_share_weights_and_results():
    """open_clip's SDPA blocks ("custom", the default) and nn.MultiheadAttention blocks ("default") take the same
    state dict (checkpoints from either load into the other) and give the same probabilities."""
    cfg = get_model_config("tiny-test")
    torch.manual_seed(0)
    sdpa = SynSeg(cfg).eval()
    cfg.backbone.vision_block = "default"
    mha = SynSeg(cfg).eval()
    mha.load_state_dict(sdpa.state_dict(), strict=True)
    assert type(sdpa.backbone.clip.visual.transformer.resblocks[0]) is not type(
        mha.backbone.clip.visual.transformer.resblocks[0])
    images, text = torch.randn(2, 3, 64, 64), torch.randn(3, sdpa.backbone.embed_dim)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(images, text), mha(images, text), atol=1e-5, rtol=0)
