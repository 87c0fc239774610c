"""Import a Hugging Face CLIPSeg decoder (e.g. `CIDAS/clipseg-rd64-refined`) onto SynSeg's decoder and FiLM.

SynSeg's decoder uses HF's parameter names, so the mapping is the `decoder.` prefix; what differs is checked and
reported (a decoder built with another reduce_dim, depth or upsampler does not match).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file

from .checkpoint import CheckpointError
from .synseg import SynSeg

HF_PREFIX = "decoder."


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
