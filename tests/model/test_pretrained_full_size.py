"""clipseg-rd64-refined at full size, random weights: Hugging Face's default CLIPSegConfig with the two settings
CIDAS/clipseg-rd64-refined's config.json changes (patch 16, the refined upsampler), i.e. CLIP ViT-B/16 (12 + 12
blocks, 768 / 512 wide) and the rd64 decoder, served by the local hub, converted, and compared with transformers."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from clipseg_files import REPO_ID, build_clipseg, hf_probabilities
from hub_server import FakeHub, HubServer
from synseg_core import Segmenter
from synseg_core.config import replace_inference
from synseg_core.model.cli import main
from synseg_core.model.hub import download_pretrained

pytestmark = pytest.mark.slow
NAME = "clipseg-rd64-refined"
VIT_B16_SIZE = 224


def test_full_size_clipseg_converts_and_matches_transformers(tmp_path):
    hf_model = build_clipseg(tmp_path / "repo", output_scale=1 / 256, vision_config={"patch_size": 16},
                             use_complex_transposed_convolution=True)
    fake = FakeHub()
    fake.add_folder(REPO_ID, tmp_path / "repo")
    with HubServer(fake) as server:
        folder = download_pretrained(NAME, tmp_path / "models", endpoint=server.url, hf_cache=tmp_path / "hf")
    del fake  # the served bytes
    segmenter = Segmenter.from_checkpoint(folder)
    clip = segmenter.model.cfg.backbone.clip_config
    vision, text = clip["vision_cfg"], clip["text_cfg"]
    assert (vision["width"], vision["layers"], vision["patch_size"]) == (768, 12, 16)
    assert (text["width"], text["layers"], clip["embed_dim"]) == (512, 12, 512)
    segmenter.inference = replace_inference(segmenter.inference, short_side=VIT_B16_SIZE, window=None)
    image = np.random.default_rng(0).integers(0, 256, (VIT_B16_SIZE, VIT_B16_SIZE, 3), dtype=np.uint8)
    prompts = ["cat", "sofa"]
    ours = segmenter.segment(image, prompts).probabilities
    expected = hf_probabilities(hf_model, image, [f"a photo of a {c}." for c in prompts],
                                segmenter.model.backbone.tokenizer)
    assert ((expected > 0.05) & (expected < 0.95)).mean() > 0.5, "saturated maps would prove little"
    # 24 fp32 blocks and a random decoder amplify rounding-order differences (normalisation, attention kernels)
    # to about 1e-4 at a few pixels; the towers themselves agree to 1e-5 (below).
    np.testing.assert_allclose(ours, expected, rtol=0, atol=3e-4)
    _towers_agree(hf_model, segmenter.model, [f"a photo of a {c}." for c in prompts])
    # Hand-copied weights without config.json: Hugging Face's defaults are clipseg-rd64-refined's settings.
    assert main(["import-clipseg", "--weights", str(tmp_path / "repo" / "model.safetensors"),
                 "--out", str(tmp_path / "imported")]) == 0
    imported = load_file(str(tmp_path / "imported" / NAME / "model.safetensors"))
    converted = load_file(str(folder / "model.safetensors"))
    assert imported.keys() == converted.keys() and all((imported[k] == converted[k]).all() for k in imported)


def _towers_agree(hf_model, model, prompts: list[str]) -> None:
    """The converted CLIP's extracted image tokens and text embeddings equal transformers' on the same input."""
    pixels = torch.randn(1, 3, VIT_B16_SIZE, VIT_B16_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = hf_model.clip.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
        text = hf_model.clip.get_text_features(input_ids=model.backbone.tokenizer(prompts))
        ours = model.backbone.encode_image_layers(pixels)
    for layer, tokens in zip(model.cfg.backbone.extract_layers, ours):
        torch.testing.assert_close(tokens, hidden[layer + 1], atol=1e-5, rtol=1e-5)
    text = getattr(text, "pooler_output", text)  # an output object or a tensor, depending on the version
    torch.testing.assert_close(model.backbone.encode_text(prompts), text, atol=1e-5, rtol=1e-5)
