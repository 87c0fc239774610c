"""A random-weight Hugging Face CLIPSeg in the hub repository's file layout, and transformers' reference maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

REPO_ID = "CIDAS/clipseg-rd64-refined"
# The structure of clipseg-rd64-refined (patch 16, refined upsampler, three extracted layers, FiLM at the deepest)
# at a size that converts in a second; vocabulary and context length are CLIP's, so CLIP's tokenizer applies.
SMALL_CLIPSEG = dict(
    text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
    vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
                       image_size=64, patch_size=16),
    projection_dim=24, reduce_dim=16, decoder_num_attention_heads=4, decoder_intermediate_size=40,
    extract_layers=[0, 1, 3], use_complex_transposed_convolution=True)
NATIVE_SIZE = 64
SMALL_OUTPUT_SCALE = 1 / 16  # most pixels of its maps between 0.05 and 0.95 (see build_clipseg)


def build_clipseg(folder, seed: int = 0, output_scale: float = 1.0, **config):
    """A CLIPSegForImageSegmentation with random weights spread wide enough that its maps vary, saved with
    save_pretrained into `folder` (what the hub repository holds). Returns the model in eval mode.

    output_scale multiplies the last upsampler layer: at full size random weights give logits in the hundreds, so
    nearly every pixel saturates and the few near the boundary show float rounding amplified a hundredfold; scaled
    down, most pixels land between 0.05 and 0.95 and the comparison means something.
    """
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    model = transformers.CLIPSegForImageSegmentation(transformers.CLIPSegConfig(**config)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.1 if name.startswith("decoder.") else 0.02))
        last = model.decoder.transposed_convolution
        last = last[-1] if isinstance(last, torch.nn.Sequential) else last
        last.weight.mul_(output_scale)
        last.bias.mul_(output_scale)
    model.save_pretrained(folder)
    return model


def hf_probabilities(model, image: np.ndarray, prompts: list[str], tokenizer) -> np.ndarray:
    """transformers' CLIPSeg sigmoid maps [K, H, W] for one RGB uint8 image (ImageNet normalisation, as its
    processor does) and K prompts, tokenised by CLIP's BPE tokenizer."""
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    pixels = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - mean) / std
    with torch.no_grad():
        logits = model(input_ids=tokenizer(prompts), pixel_values=pixels[None].expand(len(prompts), -1, -1, -1)).logits
    return torch.sigmoid(logits.reshape(len(prompts), *image.shape[:2])).numpy()
