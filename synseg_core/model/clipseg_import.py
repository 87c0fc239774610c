"""Hugging Face CLIPSeg (e.g. `CIDAS/clipseg-rd64-refined`) into synseg: the decoder and FiLM onto a SynSeg model,
or the whole model (CLIP towers included) converted into a self-contained SynSeg, without transformers.

SynSeg's decoder uses HF's parameter names, so the decoder mapping is the `decoder.` prefix; the CLIP towers map onto
open_clip (hf_clip.py). What differs is checked and reported (another reduce_dim, depth or upsampler does not match).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file

from ..config import BackboneConfig, DecoderConfig, InferenceConfig, PreprocessConfig, SynSegConfig
from .checkpoint import CheckpointError, load_state
from .hf_clip import HF_VISION_DEFAULTS, clip_config_from_hf, map_clip_state
from .synseg import SynSeg

HF_PREFIX = "decoder."
# Hugging Face CLIPSegConfig defaults for the decoder settings that tensor shapes cannot tell.
HF_DECODER_DEFAULTS = {"extract_layers": [3, 6, 9], "decoder_num_attention_heads": 4, "conditional_layer": 0}
CLIPSEG_TRAIN_SIZE = 352  # CLIPSeg's processor resizes to 352 x 352 (the size it was trained at)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or from a PyTorch .bin/.pt loaded with weights_only=True (no pickles run)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"CLIPSeg weights not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt files raise various types
        raise CheckpointError(f"cannot read CLIPSeg weights {path}: {exc}") from exc


def import_clipseg_decoder(model: SynSeg, source: str | Path | Mapping[str, torch.Tensor]) -> list[str]:
    """Copy an HF `CLIPSegForImageSegmentation` decoder state dict into `model.decoder`.

    Returns:
        the decoder parameter names that were loaded (all of them, or an error is raised).
    """
    state = read_state_dict(source) if isinstance(source, (str, Path)) else dict(source)
    incoming = {k[len(HF_PREFIX):]: v for k, v in state.items() if k.startswith(HF_PREFIX)}
    if not incoming:
        raise CheckpointError("no 'decoder.*' tensors found: this is not a CLIPSegForImageSegmentation state dict")
    own = model.decoder.state_dict()
    missing = sorted(set(own) - set(incoming))
    unexpected = sorted(set(incoming) - set(own))
    mismatched = sorted(f"{k}: CLIPSeg {tuple(incoming[k].shape)} vs synseg {tuple(own[k].shape)}"
                        for k in set(own) & set(incoming) if incoming[k].shape != own[k].shape)
    if missing or unexpected or mismatched:
        raise CheckpointError(f"CLIPSeg decoder does not match the synseg decoder config: missing {missing[:8]}, "
                              f"unexpected {unexpected[:8]}, shape mismatches {mismatched[:8]}")
    model.decoder.load_state_dict(incoming)
    return sorted(own)


def clipseg_config(state: Mapping[str, torch.Tensor], hf_config: Mapping, name: str,
                   inference: InferenceConfig | None = None) -> SynSegConfig:
    """The SynSeg config of a CLIPSeg state dict: CLIP as an inline open_clip config, the decoder from its shapes.

    Raises:
        CheckpointError: a tensor or setting the conversion needs is missing or unsupported.
    """
    if not isinstance(hf_config, Mapping):
        raise CheckpointError(f"the CLIPSeg config must be a JSON object, got {type(hf_config).__name__}")
    settings = {**HF_DECODER_DEFAULTS, **hf_config}
    reduces = sorted(k for k in state if k.startswith("decoder.reduces.") and k.endswith(".weight"))
    if not reduces or "decoder.layers.0.mlp.fc1.weight" not in state:
        raise CheckpointError("no decoder.reduces.* / decoder.layers.* tensors: this is not a "
                              "CLIPSegForImageSegmentation state dict")
    extract = list(settings["extract_layers"])
    if len(extract) != len(reduces):
        raise CheckpointError(f"config extract_layers {extract} lists {len(extract)} layers but the state dict has "
                              f"{len(reduces)} decoder.reduces")
    vision = {**HF_VISION_DEFAULTS, **(hf_config.get("vision_config") or {})}
    decoder = DecoderConfig(
        reduce_dim=int(state[reduces[0]].shape[0]), num_heads=int(settings["decoder_num_attention_heads"]),
        ffn_dim=int(state["decoder.layers.0.mlp.fc1.weight"].shape[0]), layer_norm_eps=float(vision["layer_norm_eps"]),
        conditional_layer=int(settings["conditional_layer"]),
        upsampler="refined" if "decoder.transposed_convolution.0.weight" in state else "simple")
    backbone = BackboneConfig(model_name=None, pretrained=None, clip_config=clip_config_from_hf(state, hf_config),
                              extract_layers=tuple(int(i) for i in extract))
    return SynSegConfig(name=name, backbone=backbone, decoder=decoder,
                        preprocess=PreprocessConfig(train_size=CLIPSEG_TRAIN_SIZE),
                        inference=inference or InferenceConfig())


def convert_clipseg(state: Mapping[str, torch.Tensor], hf_config: Mapping, name: str,
                    inference: InferenceConfig | None = None) -> SynSeg:
    """A self-contained SynSeg from a whole CLIPSeg state dict (CLIP towers + decoder) and its config.json.

    The FSS projector, which CLIPSeg has no counterpart for (it is used in training only), is initialised from a fixed
    seed so that converting the same files twice gives the same checkpoint.
    """
    cfg = clipseg_config(state, hf_config, name, inference)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SynSeg(cfg)
    mapped = {f"backbone.clip.{k}": v for k, v in map_clip_state(state).items()}
    mapped.update({k: v for k, v in model.state_dict().items() if k.startswith("synergy.")})
    mapped.update({k: v for k, v in state.items() if k.startswith(HF_PREFIX)})
    unused = sorted(k for k in state if not k.startswith(("clip.", HF_PREFIX)))
    if unused:
        raise CheckpointError(f"{len(unused)} tensor(s) outside clip.* and decoder.*: {unused[:8]}")
    load_state(model, mapped, with_backbone=True, source=f"CLIPSeg {name}")
    return model
