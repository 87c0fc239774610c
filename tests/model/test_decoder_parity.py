"""Decoder parity with an independent implementation: Hugging Face transformers' CLIPSeg."""
import pytest
import torch

from synseg_core.model.clipseg_import import import_clipseg_decoder
from synseg_core.config import BackboneConfig, DecoderConfig, SynSegConfig
from synseg_core.model.decoder import CPU_CHUNK_ROWS
from synseg_core.model.synseg import SynSeg

transformers = pytest.importorskip("transformers")


def _pair(upsampler: str):
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    vision = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
                  image_size=64, patch_size=16)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=16)
    hf_cfg = CLIPSegConfig(text_config=text, vision_config=vision, projection_dim=24, reduce_dim=16,
                           decoder_num_attention_heads=4, decoder_intermediate_size=40, extract_layers=[0, 1, 3],
                           use_complex_transposed_convolution=upsampler == "refined")
    torch.manual_seed(0)
    hf = CLIPSegForImageSegmentation(hf_cfg).eval()
    # Random biases/LN weights too, so the parity test cannot pass through zero-initialised parameters.
    with torch.no_grad():
        for p in hf.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    clip_cfg = {"embed_dim": 24, "vision_cfg": {"image_size": 64, "layers": 4, "width": 48, "head_width": 12,
                                                "patch_size": 16},
                "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    cfg = SynSegConfig(name="parity", backbone=BackboneConfig(model_name=None, pretrained=None, clip_config=clip_cfg,
                                                              extract_layers=(0, 1, 3)),
                       decoder=DecoderConfig(reduce_dim=16, num_heads=4, ffn_dim=40, upsampler=upsampler,
                                             layer_norm_eps=hf_cfg.vision_config.layer_norm_eps))
    ours = SynSeg(cfg).eval()
    loaded = import_clipseg_decoder(ours, hf.state_dict())
    assert len(loaded) == len(list(ours.decoder.state_dict()))
    return hf, ours


@pytest.mark.parametrize("upsampler", ["refined", "simple"])
@pytest.mark.parametrize("side", [4, 24], ids=["one-pass", "row-chunked"])
def test_decoder_matches_hf_clipseg(upsampler, side):
    """A 24 x 24 grid for 3 images is 1731 token rows: more than decoder.CPU_CHUNK_ROWS, so the CPU inference path
    runs the FFN and upsampler in chunks (and the last chunk is partial); with autograd on, the one-pass path runs."""
    hf, ours = _pair(upsampler)
    torch.manual_seed(1)
    b, tokens, width = 3, 1 + side * side, 48
    assert (side == 24) == (b * tokens > CPU_CHUNK_ROWS)
    acts = [torch.randn(b, tokens, width) for _ in range(3)]  # shallow -> deep
    cond = torch.randn(b, 24) * 3
    with torch.no_grad():
        expected = hf.decoder(tuple(acts), cond).logits  # [B, 16 side, 16 side]
        got = ours.decoder(acts, cond, torch.arange(b), (side, side)).logits
    with torch.enable_grad():
        got_autograd = ours.decoder(acts, cond, torch.arange(b), (side, side)).logits
    assert got.shape == expected.shape == (b, 16 * side, 16 * side)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_autograd.detach(), expected, atol=1e-5, rtol=1e-5)


def test_shared_reduce_equals_repeated_images():
    """K categories of one image decoded as a batch equal decoding a repeated image K times (the reduce sharing)."""
    _, ours = _pair("refined")
    acts = [torch.randn(2, 17, 48) for _ in range(3)]
    cond = torch.randn(5, 24)
    owner = torch.tensor([0, 0, 1, 1, 1])
    with torch.no_grad():
        shared = ours.decoder(acts, cond, owner, (4, 4)).logits
        repeated = ours.decoder([a[owner] for a in acts], cond, torch.arange(5), (4, 4)).logits
    torch.testing.assert_close(shared, repeated, atol=1e-6, rtol=1e-6)


def test_import_rejects_other_shapes(tiny_model):
    hf, _ = _pair("refined")
    from synseg_core.model.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="shape mismatches"):
        import_clipseg_decoder(tiny_model, hf.state_dict())
    with pytest.raises(CheckpointError, match="not a CLIPSegForImageSegmentation"):
        import_clipseg_decoder(tiny_model, {"foo": torch.zeros(1)})


def test_row_chunked_path_runs_under_cpu_autocast():
    """The chunked path's out= matmuls bypass autocast; under CPU bf16 autocast it must still run (in bf16, as the
    one-pass path does) and agree with the one-pass path."""
    _, ours = _pair("refined")
    acts = [torch.randn(3, 1 + 24 * 24, 48) for _ in range(3)]
    cond = torch.randn(3, 24)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            chunked = ours.decoder(acts, cond, torch.arange(3), (24, 24)).logits
        with torch.enable_grad():
            one_pass = ours.decoder(acts, cond, torch.arange(3), (24, 24)).logits.detach()
    assert chunked.dtype == one_pass.dtype == torch.bfloat16
    torch.testing.assert_close(chunked.float(), one_pass.float(), atol=0.02, rtol=0.02)
