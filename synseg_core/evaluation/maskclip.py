"""A training-free MaskCLIP-style dense baseline (Zhou et al., ECCV 2022) on the same frozen CLIP backbone.

MaskCLIP reads dense features from CLIP's last block through its value path only: the tokens entering the last
block go through ``ln_1``, the value projection and the attention output projection (no query/key mixing, no
residual, no MLP), then through ``ln_post`` and the image projection, which puts every patch in the joint
image-text space. Cosine similarity with the category text embeddings, scaled by CLIP's own logit scale and
softmaxed over categories, gives per-category probabilities.

It is exposed as an image-path backend, so the evaluator runs it through the same ``Segmenter`` (short-side
resize, sliding windows, background threshold, labels) as SynSeg itself. With background datasets the threshold
applies to these softmax probabilities.
"""
from __future__ import annotations

import open_clip
import torch
import torch.nn.functional as F

from synseg_core.model.backbone import ClipBackbone
from synseg_core.deploy.backends.base import BackendError
from synseg_core.config import PreprocessConfig
from synseg_core.model.synseg import SynSeg

METHOD_NAME = "maskclip"


def clip_normalisation(backbone: ClipBackbone) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std the CLIP weights were trained with (open_clip's preprocess config, OpenAI's by default)."""
    cfg = getattr(backbone.clip.visual, "preprocess_cfg", None) or {}
    return tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)), tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD))


def dense_clip_features(backbone: ClipBackbone, images: torch.Tensor) -> torch.Tensor:
    """MaskCLIP patch features in the joint embedding space.

    Args:
        images: [B, 3, H, W] normalised with CLIP's statistics, H and W multiples of the patch size.

    Returns:
        [B, D, H / patch, W / patch] features (not normalised).
    """
    gh, gw = backbone.grid_size(images.shape[-2], images.shape[-1])
    visual = backbone.clip.visual
    blocks = visual.transformer.resblocks
    x = backbone.embed_image(images)  # [B, 1 + gh*gw, width]
    if len(blocks) > 1:
        # Tokens entering the last block, taken through open_clip's own intermediate-feature API.
        _, inter = visual.transformer.forward_intermediates(x, indices=[len(blocks) - 2], stop_early=True)
        x = inter[0]
    last = blocks[-1]
    width = last.ln_1.normalized_shape[0]  # both open_clip block types (MultiheadAttention and SDPA Attention)
    value = F.linear(last.ln_1(x), last.attn.in_proj_weight[2 * width :], last.attn.in_proj_bias[2 * width :])
    x = last.ls_1(last.attn.out_proj(value))[:, 1:]  # patch tokens only: [B, gh*gw, width]
    x = visual.ln_post(x)
    if visual.proj is not None:
        x = x @ visual.proj
    return x.transpose(1, 2).reshape(x.shape[0], -1, gh, gw)


class MaskClipBackend:
    """Image-path backend computing MaskCLIP probabilities instead of SynSeg's decoder output.

    Args:
        model: the SynSeg model whose frozen CLIP is used (the decoder is not).
        device: where to run.

    Raises:
        BackendError: a CUDA device is asked for but none is available.
    """

    name = METHOD_NAME
    precision = "fp32"
    input_size = None
    max_batch = None
    thread_safe = True

    def __init__(self, model: SynSeg, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but torch.cuda.is_available() is False; use 'cpu'")
        self.backbone = model.backbone.to(self.device)
        mean, std = clip_normalisation(self.backbone)
        self._target = PreprocessConfig(mean=mean, std=std)
        self._source = model.cfg.preprocess

    def _renormalise(self, images: torch.Tensor) -> torch.Tensor:
        """Images normalised with the model's statistics -> normalised with CLIP's."""

        def stats(cfg: PreprocessConfig) -> tuple[torch.Tensor, torch.Tensor]:
            return (torch.tensor(cfg.mean, device=images.device).view(1, 3, 1, 1),
                    torch.tensor(cfg.std, device=images.device).view(1, 3, 1, 1))

        src_mean, src_std = stats(self._source)
        dst_mean, dst_std = stats(self._target)
        return (images * src_std + src_mean - dst_mean) / dst_std

    @torch.inference_mode()
    def run(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] normalised with the model's statistics, text [K, D] -> probabilities [B, K, S, S]."""
        images = self._renormalise(images.to(self.device).float())
        feats = F.normalize(dense_clip_features(self.backbone, images), dim=1)  # [B, D, gh, gw]
        text = F.normalize(text.to(self.device).float(), dim=-1)  # [K, D]
        logits = torch.einsum("bdhw,kd->bkhw", feats, text) * self.backbone.clip.logit_scale.exp()
        probs = logits.softmax(dim=1)
        return F.interpolate(probs, size=images.shape[-2:], mode="bilinear", align_corners=False)
