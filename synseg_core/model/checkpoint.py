"""Checkpoints: safetensors weights + a JSON config in one folder. Nothing is ever unpickled.

The trainable parts (FiLM, decoder, projector) are always saved; the CLIP backbone only when it cannot be rebuilt from
a named open_clip pretrained tag (random, inline or locally trained CLIPs).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import ConfigError, SynSegConfig
from .synseg import SynSeg

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not match the model config; the message says exactly what."""


def backbone_is_reproducible(cfg: SynSegConfig) -> bool:
    """True when the CLIP weights come from a named pretrained tag (so they need not be stored)."""
    return bool(cfg.backbone.pretrained) and not cfg.backbone.weights and cfg.backbone.model_name is not None


def save_checkpoint(model: SynSeg, path: str | Path, extra: dict | None = None) -> Path:
    """Write `path/config.json` and `path/model.safetensors` atomically (temp files + rename)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = SynSegConfig.from_dict(model.cfg.to_dict())
    with_backbone = not backbone_is_reproducible(cfg)
    if with_backbone:
        cfg.backbone.pretrained, cfg.backbone.weights = None, None  # weights travel inside the checkpoint
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
             if with_backbone or not k.startswith("backbone.")}
    meta = {"format_version": FORMAT_VERSION, "backbone_in_checkpoint": with_backbone, "config": cfg.to_dict(),
            "extra": extra or {}}
    _atomic_write(path / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"synseg": "1"}))
    _atomic_write(path / CONFIG_NAME, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
    return path


def _atomic_write(dest: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; checkpoints are shared like any written file
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_checkpoint_config(path: str | Path) -> tuple[SynSegConfig, dict]:
    """The model config and metadata of a checkpoint folder (or its model.safetensors file)."""
    folder = _folder(path)
    try:
        meta = json.loads((folder / CONFIG_NAME).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {folder / CONFIG_NAME}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION or "config" not in meta:
        raise CheckpointError(f"{folder / CONFIG_NAME} is not a synseg checkpoint config "
                              f"(expected format_version {FORMAT_VERSION} and a 'config' entry)")
    try:
        return SynSegConfig.from_dict(meta["config"]), meta
    except ConfigError as exc:
        raise CheckpointError(f"{folder / CONFIG_NAME}: {exc}") from exc


def load_checkpoint(path: str | Path, model: SynSeg | None = None) -> SynSeg:
    """Load a checkpoint into `model` (validated against its config) or into a new model built from the checkpoint."""
    folder = _folder(path)
    cfg, meta = read_checkpoint_config(folder)
    if model is None:
        model = SynSeg(cfg)
    try:
        state = load_file(str(folder / WEIGHTS_NAME))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read {folder / WEIGHTS_NAME} (truncated or corrupt?): {exc}") from exc
    load_state(model, state, with_backbone=meta["backbone_in_checkpoint"], source=str(folder))
    return model


def load_state(model: SynSeg, state: dict[str, torch.Tensor], with_backbone: bool, source: str) -> None:
    """Copy `state` into `model`, raising CheckpointError listing every missing, unexpected or mis-shaped tensor."""
    own = {k: v for k, v in model.state_dict().items() if with_backbone or not k.startswith("backbone.")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                        for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"checkpoint {source} does not match the model config: "
            f"{len(missing)} missing {missing[:8]}, {len(unexpected)} unexpected {unexpected[:8]}, "
            f"{len(mismatched)} shape mismatches {mismatched[:8]}")
    model.load_state_dict(state, strict=False)
    model.invalidate_caches()


def _folder(path: str | Path) -> Path:
    path = Path(path)
    folder = path.parent if path.suffix == ".safetensors" else path
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder} (expected {CONFIG_NAME} + {WEIGHTS_NAME})")
    return folder
