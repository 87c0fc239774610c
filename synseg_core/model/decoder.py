"""CLIPSeg rd64 decoder with FiLM conditioning (docs/method.md §3-4; HF `CLIPSegDecoder` design).

Parameter names follow Hugging Face's CLIPSeg so its decoder weights import by name (see clipseg_import.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DecoderConfig


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


# Rows per chunk when a per-token MLP runs in CPU inference: its hidden activations ([K * T, 2048] in the FFN, 64 MB at
# 448 and K=10) then stay in a small reused buffer; allocating and first touching buffers that size cost more than the
# matmuls themselves (the README's benchmark section has the figures; so has the refined upsampler as chunked
# matmuls, RefinedUpsampler, against PyTorch's convolutions).
CPU_CHUNK_ROWS = 1024


def token_mlp(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
              groups: int = 1) -> torch.Tensor:
    """relu(x @ w1 + b1), each row's hidden vector split into `groups` equal parts, each part @ w2 + b2.

    x: [R, C]; w1: [C, groups * H]; w2: [H, O] -> [R, groups * O]. Row-chunked in CPU inference (see CPU_CHUNK_ROWS);
    one pass when autograd, tracing (ONNX export) or another device is involved.
    """
    rows, out_dim = x.shape[0], groups * w2.shape[1]
    if x.device.type != "cpu" or torch.is_grad_enabled() or torch.jit.is_tracing() or rows <= CPU_CHUNK_ROWS:
        hidden = F.relu(torch.addmm(b1, x, w1)).reshape(-1, w2.shape[0])
        return torch.addmm(b2, hidden, w2).reshape(-1, out_dim)
    # out= matmuls bypass autocast: run them in x's dtype, as autocast would have (e.g. bf16 on the CPU)
    w1, b1, w2, b2 = (t.to(x.dtype) for t in (w1, b1, w2, b2))
    out = x.new_empty(rows, out_dim)
    buffer = x.new_empty(CPU_CHUNK_ROWS, w1.shape[1])
    for start in range(0, rows, CPU_CHUNK_ROWS):
        part = x[start:start + CPU_CHUNK_ROWS]
        hidden = torch.addmm(b1, part, w1, out=buffer[:len(part)]).relu_()
        torch.addmm(b2, hidden.view(-1, w2.shape[0]), w2, out=out[start:start + len(part)].view(-1, w2.shape[1]))
    return out


class DecoderMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = token_mlp(x.reshape(-1, x.shape[-1]), self.fc1.weight.t(), self.fc1.bias, self.fc2.weight.t(),
                         self.fc2.bias)
        return flat.view(x.shape)


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


def unshuffle_patches(patches: torch.Tensor, grid: tuple[int, int], k: int, levels: int) -> torch.Tensor:
    """Per-token output patches -> one map: [M * gh * gw, k^(2 levels)] laid out (i1, j1, i2, j2, ...) with the
    coarsest sub-pixel first -> [M, 1, gh * k^levels, gw * k^levels]."""
    gh, gw = grid
    y = patches.reshape(-1, gh, gw, *([k, k] * levels))
    rows = [3 + 2 * i for i in range(levels)]
    y = y.permute(0, 1, *rows, 2, *[r + 1 for r in rows])  # [M, gh, i1, i2.., gw, j1, j2..]
    side = k ** levels
    return y.reshape(-1, 1, gh * side, gw * side)


class SimpleUpsampler(nn.ConvTranspose2d):
    """CLIPSeg's simple upsampler: one p x p transposed conv of stride p to a single channel. Stride = kernel, so every
    token writes its own output patch: it runs as one matmul + a pixel shuffle (parameters as the conv's)."""

    def __init__(self, reduce_dim: int, patch_size: int):
        super().__init__(reduce_dim, 1, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, c, gh, gw = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(-1, c)
        patches = torch.addmm(self.bias, tokens, self.weight.reshape(c, -1))
        return unshuffle_patches(patches, (gh, gw), self.stride[0], 1)


class RefinedUpsampler(nn.Sequential):
    """CLIPSeg's refined upsampler: conv3x3, ReLU, transposed conv (stride = kernel = p/4), ReLU, transposed conv
    (stride = kernel = p/4, one channel). Both transposed convs write disjoint patches, so each token's p x p logits
    depend on that token alone: they run as a per-token two-layer MLP (token_mlp, groups = the k*k sub-pixels) and one
    pixel shuffle at the end, with the modules' own parameters (Hugging Face names: 0, 2, 4)."""

    def __init__(self, reduce_dim: int, k: int):
        super().__init__(
            nn.Conv2d(reduce_dim, reduce_dim, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(reduce_dim, reduce_dim // 2, kernel_size=k, stride=k),
            nn.ReLU(),
            nn.ConvTranspose2d(reduce_dim // 2, 1, kernel_size=k, stride=k),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, first, second = self[0], self[2], self[4]
        _, c, gh, gw = x.shape
        k, mid = first.stride[0], first.out_channels
        tokens = F.relu(conv(x)).permute(0, 2, 3, 1).reshape(-1, c)
        # first's weight [c, mid, i, j] -> columns ordered (i, j, mid) so each sub-pixel's `mid` features are contiguous
        w1 = first.weight.permute(0, 2, 3, 1).reshape(c, k * k * mid)
        patches = token_mlp(tokens, w1, first.bias.repeat(k * k), second.weight.reshape(mid, k * k),
                            second.bias, groups=k * k)
        return unshuffle_patches(patches, (gh, gw), k, 2)


def build_upsampler(kind: str, reduce_dim: int, patch_size: int) -> nn.Module:
    """Token grid [N, r, gh, gw] -> logits [N, 1, gh*p, gw*p] (CLIPSeg simple or refined transposed convolution)."""
    if kind == "simple":
        return SimpleUpsampler(reduce_dim, patch_size)
    k = patch_size // 4
    if k * k != patch_size:  # two transposed convs of stride p/4 scale by (p/4)², which is p only for p = 16
        raise ValueError(f"the refined upsampler (CLIPSeg's, two x{k} transposed convs) needs patch size 16, got "
                         f"{patch_size}; use upsampler 'simple' for other patch sizes")
    return RefinedUpsampler(reduce_dim, k)


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
