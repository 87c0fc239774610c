"""Hugging Face CLIP weights (the `clip.` part of a CLIPSeg state dict) onto open_clip's CLIP, without transformers.

The architecture is read from the tensor shapes (widths, depths, patch size, grid, context length, vocabulary); the
few things shapes cannot tell (head counts, activation, LayerNorm epsilon) come from the Hugging Face config.json,
with Hugging Face's documented defaults where a key is absent.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from .checkpoint import CheckpointError

# Hugging Face CLIPSeg/CLIP config defaults for the keys shapes cannot tell (CLIPSegTextConfig, CLIPSegVisionConfig).
HF_TEXT_DEFAULTS = {"num_attention_heads": 8, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
HF_VISION_DEFAULTS = {"num_attention_heads": 12, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
ACTIVATIONS = {"quick_gelu": True, "gelu": False}  # hidden_act -> open_clip's quick_gelu flag

# Hugging Face name -> open_clip name for one transformer block (q/k/v are fused separately into in_proj_*).
_BLOCK = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc",
          "mlp.fc2": "mlp.c_proj"}
_TOWER = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",  # sic: Hugging Face's name
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
    "logit_scale": "logit_scale",
}
_PROJECTIONS = {"text_projection.weight": "text_projection", "visual_projection.weight": "visual.proj"}
_LAYER = re.compile(r"^(text_model|vision_model)\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_OPEN_CLIP_TOWER = {"text_model": "transformer", "vision_model": "visual.transformer"}


def map_clip_state(state: Mapping[str, torch.Tensor], prefix: str = "clip.") -> dict[str, torch.Tensor]:
    """open_clip CLIP state dict from the Hugging Face CLIP tensors under `prefix`.

    Linear projections are transposed ([out, in] -> open_clip's [in, out] parameters); q/k/v are concatenated into
    in_proj_weight [3 width, width] / in_proj_bias [3 width]. Non-persistent `position_ids` buffers are dropped.

    Raises:
        CheckpointError: a tensor that has no open_clip counterpart, or a block without all of q, k and v.
    """
    clip = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and not k.endswith("position_ids")}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for name, tensor in clip.items():
        layer = _LAYER.match(name)
        if name in _TOWER:
            out[_TOWER[name]] = tensor
        elif name in _PROJECTIONS:
            out[_PROJECTIONS[name]] = tensor.t().contiguous()
        elif layer and layer.group(3) in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            tower, index, part, kind = layer.groups()
            qkv.setdefault((tower, index, kind), {})[part[-6]] = tensor
        elif layer and layer.group(3) in _BLOCK:
            tower, index, part, kind = layer.groups()
            out[f"{_OPEN_CLIP_TOWER[tower]}.resblocks.{index}.{_BLOCK[part]}.{kind}"] = tensor
        else:
            unknown.append(prefix + name)
    if unknown:
        raise CheckpointError(f"{len(unknown)} CLIP tensor(s) with no open_clip counterpart: {sorted(unknown)[:8]}")
    for (tower, index, kind), parts in qkv.items():
        if sorted(parts) != ["k", "q", "v"]:
            raise CheckpointError(f"{prefix}{tower}.encoder.layers.{index}: attention {kind} has only "
                                  f"{sorted(parts)} of q, k, v")
        fused = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        out[f"{_OPEN_CLIP_TOWER[tower]}.resblocks.{index}.attn.in_proj_{kind}"] = fused
    return out


def clip_config_from_hf(state: Mapping[str, torch.Tensor], hf_config: Mapping, prefix: str = "clip.") -> dict:
    """An inline open_clip CLIP config (embed_dim, quick_gelu, vision_cfg, text_cfg) for the tensors under `prefix`.

    Raises:
        CheckpointError: a tensor the architecture needs is missing, or a setting open_clip cannot express.
    """
    def shape(name: str) -> tuple[int, ...]:
        if prefix + name not in state:
            raise CheckpointError(f"no {prefix}{name} tensor: this is not a Hugging Face CLIPSeg/CLIP state dict")
        return tuple(state[prefix + name].shape)

    text = {**HF_TEXT_DEFAULTS, **(hf_config.get("text_config") or {})}
    vision = {**HF_VISION_DEFAULTS, **(hf_config.get("vision_config") or {})}
    acts = {text["hidden_act"], vision["hidden_act"]}
    if len(acts) != 1 or not acts <= set(ACTIVATIONS) or {text["layer_norm_eps"], vision["layer_norm_eps"]} != {1e-5}:
        raise CheckpointError(f"CLIP towers with hidden_act {sorted(acts)} and layer_norm_eps "
                              f"{text['layer_norm_eps']}/{vision['layer_norm_eps']}: open_clip's CLIP supports one "
                              f"activation of {sorted(ACTIVATIONS)} and LayerNorm epsilon 1e-5")
    v_width, _, patch, _ = shape("vision_model.embeddings.patch_embedding.weight")
    grid = round((shape("vision_model.embeddings.position_embedding.weight")[0] - 1) ** 0.5)
    context, t_width = shape("text_model.embeddings.position_embedding.weight")
    vision_cfg = {"image_size": grid * patch, "patch_size": patch, "width": v_width,
                  "layers": _depth(state, prefix + "vision_model"),
                  "head_width": _head_width(v_width, vision["num_attention_heads"], "vision"),
                  "mlp_ratio": shape("vision_model.encoder.layers.0.mlp.fc1.weight")[0] / v_width}
    text_cfg = {"context_length": context, "vocab_size": shape("text_model.embeddings.token_embedding.weight")[0],
                "width": t_width, "heads": text["num_attention_heads"], "layers": _depth(state, prefix + "text_model"),
                "mlp_ratio": shape("text_model.encoder.layers.0.mlp.fc1.weight")[0] / t_width}
    _head_width(t_width, text["num_attention_heads"], "text")
    return {"embed_dim": shape("text_projection.weight")[0], "quick_gelu": ACTIVATIONS[acts.pop()],
            "vision_cfg": vision_cfg, "text_cfg": text_cfg}


def _depth(state: Mapping[str, torch.Tensor], tower: str) -> int:
    pattern = re.compile(re.escape(tower) + r"\.encoder\.layers\.(\d+)\.")
    indices = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    if not indices or indices != set(range(len(indices))):
        raise CheckpointError(f"{tower}.encoder.layers.*: expected blocks 0..N-1, found {sorted(indices)}")
    return len(indices)


def _head_width(width: int, heads: int, tower: str) -> int:
    if not isinstance(heads, int) or heads < 1 or width % heads:
        raise CheckpointError(f"{tower} tower: width {width} is not divisible by num_attention_heads {heads!r}")
    return width // heads
