"""The SynSeg model: frozen CLIP + FiLM/decoder (+ FSS projector for training)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .backbone import ClipBackbone, TextEmbeddingCache
from ..config import SynSegConfig, get_model_config
from .decoder import DecoderOutput, SynSegDecoder
from .fss import FeatureSynergy


@dataclass
class TrainOutput:
    """What MCCL needs from one batch (docs/method.md); the loss itself is `synseg_core.training.losses`."""

    maps: torch.Tensor  # A [M, H, W] activation maps of the caption categories, float32
    foreground: torch.Tensor  # f [M, D]
    background: torch.Tensor  # f̄ [M, D]
    absent_maps: torch.Tensor | None = None  # [M_absent, H, W] maps of categories absent from their image


class SynSeg(nn.Module):
    """Image path: `forward(images, text) -> probabilities`. Training path: `forward_train(...) -> TrainOutput`."""

    def __init__(self, cfg: SynSegConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = ClipBackbone(cfg.backbone)
        self.decoder = SynSegDecoder(cfg.decoder, clip_width=self.backbone.width, cond_dim=self.backbone.embed_dim,
                                     n_layers=len(cfg.backbone.extract_layers), patch_size=self.backbone.patch_size)
        self.synergy = FeatureSynergy(cfg.synergy, cfg.decoder.reduce_dim, self.backbone.embed_dim)
        self.text_cache = TextEmbeddingCache(self.backbone)

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """FiLM, decoder and projector parameters (the CLIP weights are frozen)."""
        return {n: p for n, p in self.named_parameters() if not n.startswith("backbone.")}

    def invalidate_caches(self) -> None:
        """Drop cached text embeddings and interpolated positions (call after changing the CLIP weights)."""
        self.text_cache.clear()
        self.backbone.clear_caches()

    def text_embeddings(self, categories: Sequence[str], template_set: str | None = None) -> torch.Tensor:
        """Cached template-ensemble embeddings [K, D] (raw text projection output)."""
        return self.text_cache(categories, template_set or self.cfg.inference.templates)

    def decode(self, images: torch.Tensor, text: torch.Tensor, owner: torch.Tensor,
               acts: list[torch.Tensor] | None = None) -> DecoderOutput:
        """Run CLIP once per image (unless its `acts` are given) and the decoder once per (image, category) pair."""
        grid = self.backbone.grid_size(images.shape[-2], images.shape[-1])
        if acts is None:
            acts = self.backbone.encode_image_layers(images)
        return self.decoder(acts, text.to(acts[0].dtype), owner, grid)

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Image path: normalised images [B, 3, S, S], text embeddings [K, D] -> probabilities [B, K, S, S]."""
        b, k = images.shape[0], text.shape[0]
        # expand/reshape rather than repeat_interleave: exports to plain Expand/Reshape ONNX ops
        owner = torch.arange(b, device=images.device)[:, None].expand(b, k).reshape(-1)
        pairs = text[None].expand(b, k, text.shape[-1]).reshape(b * k, text.shape[-1])
        logits = self.decode(images, pairs, owner).logits
        return torch.sigmoid(logits).reshape(b, k, images.shape[-2], images.shape[-1])

    def forward_train(self, images: torch.Tensor, text: torch.Tensor, owner: torch.Tensor,
                      absent_text: torch.Tensor | None = None,
                      absent_owner: torch.Tensor | None = None) -> TrainOutput:
        """Activation maps and synergy features of a batch, the inputs of MCCL.

        Args:
            images: [B, 3, S, S] normalised.
            text: embeddings [M, D] of the caption categories, flat over the batch.
            owner: [M] image index of each category.
            absent_text, absent_owner: optional categories absent from their image (absent extension).
        """
        acts = self.backbone.encode_image_layers(images)
        decoded = self.decode(images, text, owner, acts)
        maps = torch.sigmoid(decoded.logits.float())
        feats = self.synergy(decoded, maps)
        absent_maps = None
        if absent_text is not None and len(absent_text):
            absent_maps = torch.sigmoid(self.decode(images, absent_text, absent_owner, acts).logits.float())
        return TrainOutput(maps=maps, foreground=feats.foreground, background=feats.background, absent_maps=absent_maps)


def create_model(config: str | SynSegConfig) -> SynSeg:
    """Build a SynSeg model from a bundled config name or a SynSegConfig (backbone weights as the config says)."""
    return SynSeg(get_model_config(config) if isinstance(config, str) else config)
