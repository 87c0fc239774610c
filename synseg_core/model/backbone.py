"""The frozen CLIP backbone over open_clip: multi-layer image tokens at any input size, and text embeddings."""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ..config import BackboneConfig, ConfigError

TEMPLATES_FILE = Path(__file__).resolve().parent.parent / "resources" / "templates.json"


def list_template_sets() -> list[str]:
    return sorted(k for k in json.loads(TEMPLATES_FILE.read_text()) if not k.startswith("_"))


def get_templates(name: str) -> list[str]:
    """Prompt templates of a named set (each has one `{}` for the category)."""
    sets = json.loads(TEMPLATES_FILE.read_text())
    if name.startswith("_") or name not in sets:
        raise ConfigError(f"unknown template set {name!r}; available: {list_template_sets()}")
    return sets[name]


def build_clip(cfg: BackboneConfig) -> tuple[nn.Module, object]:
    """Create the open_clip model and its tokenizer from a BackboneConfig (no download unless `pretrained` is a tag)."""
    if cfg.clip_config is not None:
        vision_cfg = dict(cfg.clip_config.get("vision_cfg", {}), block_type=cfg.vision_block)
        model = open_clip.CLIP(**{**cfg.clip_config, "vision_cfg": vision_cfg})
        context_length = cfg.clip_config.get("text_cfg", {}).get("context_length", 77)
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
    elif cfg.model_name:
        if cfg.model_name not in open_clip.list_models():
            raise ConfigError(f"unknown open_clip model {cfg.model_name!r}; see open_clip.list_models()")
        vision_cfg = dict(open_clip.get_model_config(cfg.model_name)["vision_cfg"], block_type=cfg.vision_block)
        model = open_clip.create_model(cfg.model_name, pretrained=cfg.pretrained if not cfg.weights else None,
                                       vision_cfg=vision_cfg)
        tokenizer = open_clip.get_tokenizer(cfg.model_name)
    else:
        raise ConfigError("backbone needs `model_name` (an open_clip architecture) or an inline `clip_config`")
    if cfg.weights:
        load_clip_weights(model, cfg.weights)
    return model, tokenizer


def load_clip_weights(model: nn.Module, path: str | Path) -> None:
    """Load a CLIP state dict from .safetensors, reporting missing/unexpected keys and shape mismatches."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"CLIP weights must be a .safetensors file (no pickles are loaded), got {path}")
    if not path.is_file():
        raise ConfigError(f"CLIP weights file not found: {path}")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for truncated/corrupt files
        raise ConfigError(f"cannot read CLIP weights {path}: {exc}") from exc
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
           for k in set(own) & set(state) if state[k].shape != own[k].shape]
    if missing or unexpected or bad:
        raise ConfigError(f"CLIP weights {path} do not match the backbone config: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}, shape mismatches {bad[:5]}")
    model.load_state_dict(state)


class ClipBackbone(nn.Module):
    """Frozen CLIP. Image side returns residual-stream tokens after the configured blocks; text side returns the
    raw (un-normalised) text projection output, which is what CLIPSeg's FiLM was trained on."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.cfg = cfg
        self.clip, self.tokenizer = build_clip(cfg)
        visual = self.clip.visual
        n_blocks = len(visual.transformer.resblocks)
        layers = list(cfg.extract_layers)
        if not layers or any(not 0 <= i < n_blocks for i in layers) or layers != sorted(set(layers)):
            raise ConfigError(f"extract_layers {layers} must be increasing, distinct block indices in [0, {n_blocks})")
        self.extract_layers = layers
        self.patch_size = int(visual.patch_size[0])
        self.width = int(visual.transformer.width)
        self.embed_dim = int(self.clip.text_projection.shape[-1]) if self.clip.text_projection is not None \
            else int(self.clip.transformer.width)
        self.native_grid = int(visual.grid_size[0])
        self._pos_cache: dict[tuple[int, int], torch.Tensor] = {}
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "ClipBackbone":
        # Frozen: always in eval mode, whatever the parent module asks.
        return super().train(False)

    def clear_caches(self) -> None:
        self._pos_cache.clear()

    def _positional_embedding(self, gh: int, gw: int) -> torch.Tensor:
        """Positional embeddings interpolated bicubically to a gh x gw grid (CLIPSeg's rule), cached per grid."""
        pos = self.clip.visual.positional_embedding  # [1 + g*g, width]
        if (gh, gw) == (self.native_grid, self.native_grid):
            return pos
        key = (gh, gw)
        cached = self._pos_cache.get(key)
        if cached is None or cached.device != pos.device or cached.dtype != pos.dtype:
            cls_pos, grid_pos = pos[:1], pos[1:]
            g = self.native_grid
            grid = grid_pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)  # [1, width, g, g]
            grid = F.interpolate(grid.float(), size=(gh, gw), mode="bicubic", align_corners=False).to(pos.dtype)
            cached = torch.cat([cls_pos, grid.permute(0, 2, 3, 1).reshape(gh * gw, -1)], dim=0)
            if not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
                self._pos_cache[key] = cached
        return cached

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        """Patch + class tokens with interpolated positions and ln_pre: [B,3,H,W] -> [B, 1 + gh*gw, width]."""
        visual = self.clip.visual
        x = visual.conv1(images.to(visual.conv1.weight.dtype))  # [B, width, gh, gw]
        gh, gw = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # [B, gh*gw, width]
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self._positional_embedding(int(gh), int(gw)).to(x.dtype)
        return visual.ln_pre(x)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} must be a multiple of the patch size {self.patch_size}")
        return height // self.patch_size, width // self.patch_size

    @torch.no_grad()
    def encode_image_layers(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Tokens after each extracted block, shallow to deep: list of [B, 1 + gh*gw, width].

        The tower stops after the deepest extracted block (the rest is never run)."""
        self.grid_size(images.shape[-2], images.shape[-1])
        x = self.embed_image(images)
        _, intermediates = self.clip.visual.transformer.forward_intermediates(
            x, indices=self.extract_layers, stop_early=True)
        return intermediates

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Raw text projection output for each prompt: [N, embed_dim]."""
        device = self.clip.token_embedding.weight.device
        tokens = self.tokenizer(list(prompts)).to(device)
        return self.clip.encode_text(tokens, normalize=False).float()

    def encode_categories(self, categories: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """Template-ensemble embedding per category (mean of raw outputs, as TCL): [K, embed_dim]."""
        prompts = [t.format(c) for c in categories for t in templates]
        emb = self.encode_text(prompts)
        return emb.reshape(len(categories), len(templates), -1).mean(dim=1)


class TextEmbeddingCache:
    """LRU cache of category embeddings keyed by (template set, category string)."""

    def __init__(self, backbone: ClipBackbone, max_entries: int = 4096):
        self.backbone = backbone
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()

    def __call__(self, categories: Sequence[str], template_set: str) -> torch.Tensor:
        """Embeddings [K, D] for the categories, computing only the ones not cached yet."""
        missing = [c for c in dict.fromkeys(categories) if (template_set, c) not in self._cache]
        if missing:
            emb = self.backbone.encode_categories(missing, get_templates(template_set))
            for c, e in zip(missing, emb):
                self._cache[(template_set, c)] = e
        out = []
        for c in categories:
            self._cache.move_to_end((template_set, c))
            out.append(self._cache[(template_set, c)])
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return torch.stack(out)

    def clear(self) -> None:
        self._cache.clear()

