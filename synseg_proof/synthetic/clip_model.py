"""The stage-1 tiny CLIP: its settings, the open_clip model built from them, preprocessing, and its exported files.

The exported pair is what the SynSeg backbone loads: ``clip_config.json`` is an open_clip model config
(``open_clip.CLIP(**config)``: embed_dim, vision_cfg, text_cfg) and ``clip.safetensors`` its state dict. The
tokenizer is open_clip's default BPE ``SimpleTokenizer`` with the config's ``text_cfg.context_length``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import open_clip
import torch
from safetensors.torch import load_file, save_file

from synseg_core.config import IMAGENET_MEAN, IMAGENET_STD, ConfigError, from_dict
from synseg_core.training.config import OptimConfig, ScheduleConfig

CLIP_WEIGHTS_FILE = "clip.safetensors"
CLIP_CONFIG_FILE = "clip_config.json"
# open_clip's BPE vocabulary size: fixed by the default tokenizer, so it is not a setting.
BPE_VOCAB_SIZE = 49408
SAVE_DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass
class ClipPretrainConfig:
    """Every setting of stage 1 (architecture, optimisation, evaluation).

    Images are normalised with ImageNet statistics because the SynSeg model config's preprocessing uses them
    (CLIPSeg convention); the CLIP must see at inference what it saw in training.
    """

    # Architecture (open_clip ViT + text transformer).
    image_size: int = 128
    patch_size: int = 16
    embed_dim: int = 128
    vision_width: int = 128
    vision_layers: int = 6
    vision_head_width: int = 32
    text_width: int = 64
    text_layers: int = 3
    text_heads: int = 4
    context_length: int = 24
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # Optimisation: the training engine's AdamW (weight decay skips gains, biases and logit_scale), linear warm-up
    # then cosine decay, no gradient clipping (as CLIP's own training); see `optim_config` / `schedule_config`.
    batch_size: int = 256
    steps: int = 1200
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    max_logit_scale: float = 100.0  # CLIP clamps the learned temperature at this scale
    # Beyond plain CLIP (NegCLIP-style hard negatives): each image must also prefer its caption over the same
    # caption with one shape word swapped. Colour and stuff separate most pairs of a random batch, so ClipLoss
    # alone gives shape little gradient (docs/proof_of_learning.md has the stage-1 accuracies). 0 = off.
    shape_swap_weight: float = 1.0
    hflip: bool = True  # captions never say left or right, so mirroring keeps them true
    seed: int = 0
    threads: int = 1  # torch CPU threads used by the CLI
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"  # autocast of the training forward (fp16: CUDA)
    checkpoint_every: int = 100
    log_every: int = 10
    eval_every: int = 100  # zero-shot accuracy during training, logged with the loss (0 = only at the end)
    # Evaluation on freshly generated scenes (seed distinct from any training split's).
    eval_seed: int = 1_000_003
    zero_shot_images: int = 300  # single-object images per domain
    retrieval_images: int = 1000
    eval_batch_size: int = 250
    zero_shot_templates: tuple[str, ...] = ("{}", "a photo of a {}.")
    save_dtype: Literal["float16", "float32"] = "float16"

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.vision_width % self.vision_head_width or self.text_width % self.text_heads:
            raise ConfigError(f"vision_width {self.vision_width} must be a multiple of vision_head_width "
                              f"{self.vision_head_width}, text_width {self.text_width} of text_heads {self.text_heads}")
        if self.eval_every < 0:
            raise ConfigError(f"eval_every must be 0 (off) or positive, got {self.eval_every}")
        for name in ("batch_size", "steps", "checkpoint_every", "log_every", "eval_batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ConfigError(f"a contrastive batch needs at least 2 pairs, got batch_size={self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def optim_config(self) -> OptimConfig:
        """The AdamW settings of these settings for the training engine."""
        return OptimConfig(lr=self.lr, projector_lr=self.lr, weight_decay=self.weight_decay, betas=self.betas,
                           eps=self.eps, grad_clip_norm=None)

    def schedule_config(self) -> ScheduleConfig:
        """The warm-up + cosine schedule of these settings for the training engine."""
        return ScheduleConfig(max_steps=self.steps, warmup_steps=self.warmup_steps, min_lr=self.min_lr)


def config_with_overrides(base: ClipPretrainConfig, overrides: dict[str, Any]) -> ClipPretrainConfig:
    """A validated copy of ``base`` with ``overrides`` applied (unknown keys and wrong types are errors)."""
    return from_dict(ClipPretrainConfig, {**base.to_dict(), **overrides})


def clip_model_config(cfg: ClipPretrainConfig) -> dict[str, Any]:
    """The open_clip model config (``open_clip.CLIP(**result)``) of these settings."""
    return {
        "embed_dim": cfg.embed_dim,
        "vision_cfg": {"image_size": cfg.image_size, "patch_size": cfg.patch_size, "width": cfg.vision_width,
                       "layers": cfg.vision_layers, "head_width": cfg.vision_head_width},
        "text_cfg": {"context_length": cfg.context_length, "vocab_size": BPE_VOCAB_SIZE, "width": cfg.text_width,
                     "heads": cfg.text_heads, "layers": cfg.text_layers},
    }


def build_clip(model_config: dict[str, Any]) -> tuple[open_clip.CLIP, open_clip.tokenizer.SimpleTokenizer]:
    """Random-weight open_clip CLIP and its tokenizer from an open_clip model config."""
    model = open_clip.CLIP(**model_config)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=model_config["text_cfg"]["context_length"])
    return model, tokenizer


def normalise_images(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 RGB [B, H, W, 3] -> float32 [B, 3, H, W], scaled to 0..1 and normalised per channel."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: Path,
                            metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file through a temporary name and rename, so a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def export_clip(model: open_clip.CLIP, model_config: dict[str, Any], out_dir: str | Path,
                dtype: Literal["float16", "float32"]) -> Path:
    """Write ``clip.safetensors`` (state dict stored in ``dtype``) and ``clip_config.json`` into ``out_dir``."""
    if dtype not in SAVE_DTYPES:
        raise ConfigError(f"unknown save dtype {dtype!r}; valid: {list(SAVE_DTYPES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.to(SAVE_DTYPES[dtype]) for k, v in model.state_dict().items()}
    atomic_save_safetensors(state, out / CLIP_WEIGHTS_FILE)
    tmp = out / f".{CLIP_CONFIG_FILE}.tmp"
    tmp.write_text(json.dumps(model_config, indent=1) + "\n")
    os.replace(tmp, out / CLIP_CONFIG_FILE)
    return out


def load_exported_clip(folder: str | Path) -> tuple[open_clip.CLIP, open_clip.tokenizer.SimpleTokenizer]:
    """Rebuild an exported CLIP (weights cast to float32) with its tokenizer, in eval mode.

    Raises:
        ConfigError: a file is missing or the weights do not match the config.
    """
    folder = Path(folder)
    for name in (CLIP_CONFIG_FILE, CLIP_WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise ConfigError(f"{folder} has no {name}; export one with synseg_proof/cli/pretrain_clip.py")
    model, tokenizer = build_clip(json.loads((folder / CLIP_CONFIG_FILE).read_text()))
    try:
        model.load_state_dict(load_file(str(folder / CLIP_WEIGHTS_FILE)))
    except RuntimeError as exc:
        raise ConfigError(f"{folder / CLIP_WEIGHTS_FILE} does not match {folder / CLIP_CONFIG_FILE}: {exc}") from exc
    return model.eval(), tokenizer


# Tiny settings for tests and CI smoke runs: seconds per step budget, not quality.
FAST_OVERRIDES: dict[str, Any] = {
    "image_size": 32, "embed_dim": 16, "vision_width": 32, "vision_layers": 2, "vision_head_width": 16,
    "text_width": 16, "text_layers": 1, "text_heads": 2, "context_length": 16, "batch_size": 16, "steps": 30,
    "warmup_steps": 3, "checkpoint_every": 10, "log_every": 1, "eval_every": 0, "zero_shot_images": 24,
    "retrieval_images": 32, "eval_batch_size": 32,
}
