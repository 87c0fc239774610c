"""Named pretrained models: where the weights come from (a Hugging Face repository, revision and files), under which
licence, and how they become a self-contained synseg checkpoint (the converter). Architecture, weights and
inference settings travel inside the converted checkpoint; this table only says how to obtain it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

from ..config import ConfigError, InferenceConfig
from .clipseg_import import convert_clipseg
from .synseg import SynSeg

# A converter turns the downloaded files' state dict and config.json into a SynSeg model.
Converter = Callable[[Mapping[str, torch.Tensor], Mapping, str, InferenceConfig], SynSeg]


@dataclass(frozen=True)
class PretrainedModel:
    """One named model: `files` are fetched from `repo_id` at `revision`; `weights` is the one holding the tensors."""

    name: str
    repo_id: str
    revision: str
    config_file: str
    weights: str
    licence: str
    description: str
    converter: Converter
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    @property
    def files(self) -> tuple[str, str]:
        return self.config_file, self.weights


_MODELS = (
    PretrainedModel(
        name="clipseg-rd64-refined",
        repo_id="CIDAS/clipseg-rd64-refined",
        # The branch, not a commit: the commit it resolves to is recorded in the converted checkpoint's provenance.
        revision="main",
        config_file="config.json",
        weights="model.safetensors",
        licence="Apache-2.0 (model card of CIDAS/clipseg-rd64-refined); the CLIP ViT-B/16 weights inside are "
                "OpenAI's CLIP (MIT licence)",
        description="CLIPSeg rd64 refined (Lüddecke & Ecker): CLIP ViT-B/16 + the rd64 decoder with the refined "
                    "upsampler, trained on PhraseCut; inference at 448 with a 448/224 sliding window, thresholds 0.5",
        converter=convert_clipseg,
        # CLIPSeg outputs independent sigmoids: 0.5 is its own decision boundary for masks and background.
        inference=InferenceConfig(short_side=448, window=448, stride=224, mask_threshold=0.5,
                                  background_threshold=0.5),
    ),
)
REGISTRY: dict[str, PretrainedModel] = {m.name: m for m in _MODELS}


def list_pretrained() -> list[str]:
    """Names of the registered pretrained models."""
    return sorted(REGISTRY)


def get_pretrained(name: str) -> PretrainedModel:
    """The registry entry of `name` (ConfigError listing the known names otherwise)."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown pretrained model {name!r}; registered: {list_pretrained()}")
    return REGISTRY[name]
