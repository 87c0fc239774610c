"""CLIPSeg rd64 decoder with FiLM conditioning (paper_spec.md 2.2-2.3; HF `CLIPSegDecoder` design).

Parameter names follow Hugging Face's CLIPSeg so its decoder weights import by name (see clipseg_import.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import DecoderConfig


class DecoderAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections (HF CLIP attention layout)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"reduce_dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, T, dim] -> [N, T, dim]."""
        n, t, d = x.shape
        h = self.num_heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(n, t, h, d // h).transpose(1, 2)  # [N, heads, T, head_dim]

        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(out.transpose(1, 2).reshape(n, t, d))


class DecoderMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class DecoderLayer(nn.Module):
    """Post-norm transformer encoder layer (CLIPSeg's decoder block)."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.self_attn = DecoderAttention(cfg.reduce_dim, cfg.num_heads)
        self.layer_norm1 = nn.LayerNorm(cfg.reduce_dim, eps=cfg.layer_norm_eps)
        self.mlp = DecoderMLP(cfg.reduce_dim, cfg.ffn_dim)
        self.layer_norm2 = nn.LayerNorm(cfg.reduce_dim, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm1(x + self.self_attn(x))
        return self.layer_norm2(x + self.mlp(x))


def build_upsampler(kind: str, reduce_dim: int, patch_size: int) -> nn.Module:
    """Token grid [N, r, gh, gw] -> logits [N, 1, gh*p, gw*p] (CLIPSeg simple or refined transposed convolution)."""
    if kind == "simple":
        return nn.ConvTranspose2d(reduce_dim, 1, patch_size, stride=patch_size)
    k = patch_size // 4
    if k * k != patch_size:  # two transposed convs of stride p/4 scale by (p/4)², which is p only for p = 16
        raise ValueError(f"the refined upsampler (CLIPSeg's, two x{k} transposed convs) needs patch size 16, got "
                         f"{patch_size}; use upsampler 'simple' for other patch sizes")
    return nn.Sequential(
        nn.Conv2d(reduce_dim, reduce_dim, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(reduce_dim, reduce_dim // 2, kernel_size=k, stride=k),
        nn.ReLU(),
        nn.ConvTranspose2d(reduce_dim // 2, 1, kernel_size=k, stride=k),
    )


@dataclass
class DecoderOutput:
    """Per (image, category) pair M: logits [M, H, W]; token tensors [M, 1 + gh*gw, reduce_dim]."""

    logits: torch.Tensor
    film_output: torch.Tensor  # V_c: FiLM(reduce_0(x_deepest)), the paper's conditional visual feature
    unconditioned: torch.Tensor  # reduce_0(x_deepest) before FiLM
    tokens: torch.Tensor  # final decoder tokens before the upsampler
    grid: tuple[int, int]


class SynSegDecoder(nn.Module):
    """Reduce projections + FiLM + post-norm transformer blocks + upsampler.

    The reduce projections run once per image and are shared by all categories of that image; only FiLM, the blocks
    and the upsampler run per (image, category) pair."""

    def __init__(self, cfg: DecoderConfig, clip_width: int, cond_dim: int, n_layers: int, patch_size: int):
        super().__init__()
        if not 0 <= cfg.conditional_layer < n_layers:
            raise ValueError(f"conditional_layer {cfg.conditional_layer} must be in [0, {n_layers})")
        self.cfg = cfg
        self.patch_size = patch_size
        self.film_mul = nn.Linear(cond_dim, cfg.reduce_dim)
        self.film_add = nn.Linear(cond_dim, cfg.reduce_dim)
        self.reduces = nn.ModuleList([nn.Linear(clip_width, cfg.reduce_dim) for _ in range(n_layers)])
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(n_layers)])
        self.transposed_convolution = build_upsampler(cfg.upsampler, cfg.reduce_dim, patch_size)

    def reduce(self, activations: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-image reduced tokens, deepest first: list of [B, T, reduce_dim]."""
        return [reduce(act) for act, reduce in zip(activations[::-1], self.reduces)]

    def forward(self, activations: list[torch.Tensor], cond: torch.Tensor, owner: torch.Tensor,
                grid: tuple[int, int]) -> DecoderOutput:
        """Decode M (image, category) pairs.

        Args:
            activations: CLIP tokens of the extracted layers, shallow to deep, each [B, T, clip_width].
            cond: conditional (text) embeddings [M, cond_dim].
            owner: image index of each pair [M] (long).
            grid: token grid (gh, gw) with T = 1 + gh * gw.
        """
        reduced = [r.index_select(0, owner) for r in self.reduce(activations)]  # each [M, T, r]
        output = unconditioned = film = None
        for i, (red, layer) in enumerate(zip(reduced, self.layers)):
            output = red if output is None else red + output
            if i == self.cfg.conditional_layer:
                unconditioned = output
                output = self.film_mul(cond)[:, None] * output + self.film_add(cond)[:, None]
                film = output
            output = layer(output)
        gh, gw = grid
        spatial = output[:, 1:].transpose(1, 2).reshape(output.shape[0], -1, gh, gw)  # [M, r, gh, gw]
        logits = self.transposed_convolution(spatial).squeeze(1)  # [M, gh*p, gw*p]
        return DecoderOutput(logits=logits, film_output=film, unconditioned=unconditioned, tokens=output, grid=grid)
