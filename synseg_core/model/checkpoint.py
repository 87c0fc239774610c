"""Checkpoints: safetensors weights + a JSON config in one folder. Nothing is ever unpickled.

The trainable parts (FiLM, decoder, projector) are always saved; the CLIP backbone only when it cannot be rebuilt from
a named open_clip pretrained tag (random, inline or locally trained CLIPs). config.json records the SHA-256 and size
of the weight file, checked on load (a flipped byte inside a tensor still parses); non-finite weights are refused.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import ConfigError, SynSegConfig
from ..outputs import atomic_write, atomic_write_text
from .synseg import SynSeg

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Sections every saved model config holds: a missing one would silently fall back to defaults (the default backbone
# downloads open_clip's ViT-B/16 weights), so a config without them is refused.
REQUIRED_SECTIONS = ("backbone", "decoder", "preprocess", "inference", "synergy", "loss", "name")
REQUIRED_BACKBONE_FIELDS = ("model_name", "pretrained")  # where the CLIP architecture and weights come from


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
    atomic_write(path / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata={"synseg": "1"}))
    meta = {"format_version": FORMAT_VERSION, "backbone_in_checkpoint": with_backbone, "config": cfg.to_dict(),
            "files": {WEIGHTS_NAME: file_record(path / WEIGHTS_NAME)}, "extra": extra or {}}
    atomic_write_text(path / CONFIG_NAME, json.dumps(meta, indent=1))
    return path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_record(path: str | Path) -> dict:
    """What config.json records of a weight file: {"sha256", "bytes"}."""
    return {"sha256": file_sha256(path), "bytes": Path(path).stat().st_size}


def read_checkpoint_config(path: str | Path) -> tuple[SynSegConfig, dict]:
    """The model config and metadata of a checkpoint folder (or its model.safetensors file).

    Raises:
        CheckpointError: config.json is unreadable or malformed; the message names the file and the field.
    """
    file = _folder(path) / CONFIG_NAME
    try:
        meta = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read {file}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{file} is not a synseg checkpoint config (expected a JSON object with "
                              f"format_version {FORMAT_VERSION}, 'backbone_in_checkpoint' and 'config')")
    _check_meta(meta, file)
    try:
        cfg = SynSegConfig.from_dict(meta["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{file}: {exc}") from exc
    if meta["backbone_in_checkpoint"]:
        cfg.backbone.pretrained, cfg.backbone.weights = None, None  # the file holds the CLIP weights: never fetch
    return cfg, meta


def _check_meta(meta: dict, file: Path) -> None:
    """Every field the loader relies on is present and of the right type (else CheckpointError naming it)."""
    def bad(field: str, problem: str) -> CheckpointError:
        return CheckpointError(f"{file}: field {field!r} {problem}")

    if not isinstance(meta.get("backbone_in_checkpoint"), bool):
        raise bad("backbone_in_checkpoint", f"must be true or false, got {_shown(meta, 'backbone_in_checkpoint')}")
    config = meta.get("config")
    if not isinstance(config, dict):
        raise bad("config", f"must be the model config mapping, got {_shown(meta, 'config')}")
    for section in REQUIRED_SECTIONS:
        if section not in config:
            raise bad(f"config.{section}", "is missing (a checkpoint's config lists every section of the model "
                                           f"config: {', '.join(REQUIRED_SECTIONS)})")
    if not isinstance(config["backbone"], dict):
        raise bad("config.backbone", f"must be a mapping, got {config['backbone']!r}")
    for field in REQUIRED_BACKBONE_FIELDS:
        if field not in config["backbone"]:
            raise bad(f"config.backbone.{field}", "is missing (it says where the CLIP architecture and weights "
                                                   "come from)")
    if not isinstance(meta.get("extra", {}), dict):
        raise bad("extra", f"must be a mapping, got {meta['extra']!r}")
    files = meta.get("files", {})
    if not isinstance(files, dict):
        raise bad("files", f"must map file names to {{'sha256', 'bytes'}}, got {files!r}")
    for name, record in files.items():
        if not isinstance(record, dict) or not isinstance(record.get("sha256"), str) \
                or not isinstance(record.get("bytes"), int):
            raise bad(f"files.{name}.sha256", f"must be {{'sha256': hex string, 'bytes': integer}}, got {record!r}")


def _shown(meta: dict, key: str) -> str:
    return repr(meta[key]) if key in meta else "nothing (the field is missing)"


def load_checkpoint(path: str | Path, model: SynSeg | None = None, *, verify: bool = True) -> SynSeg:
    """Load a checkpoint into `model` (validated against its config) or into a new model built from the checkpoint.

    verify=False skips the SHA-256 check of the weight file (slow for very large files); the non-finite check stays.
    """
    folder = _folder(path)
    cfg, meta = read_checkpoint_config(folder)
    weights = folder / WEIGHTS_NAME
    if verify:
        _verify_file(folder, meta)
    if model is None:
        model = SynSeg(cfg)
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read {weights} (truncated or corrupt?): {exc}") from exc
    _check_finite(state, weights)
    load_state(model, state, with_backbone=meta["backbone_in_checkpoint"], source=str(folder))
    return model


def verify_checkpoint(path: str | Path) -> bool:
    """Check a checkpoint's weight file against the size and SHA-256 in its config.json.

    Returns:
        True when verified; False when the checkpoint records no hash (written before hashes were recorded).

    Raises:
        CheckpointError: the file is missing, truncated or changed (the message names it and the config).
    """
    folder = _folder(path)
    return _verify_file(folder, read_checkpoint_config(folder)[1])


def _verify_file(folder: Path, meta: dict) -> bool:
    weights, config = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    record = meta.get("files", {}).get(WEIGHTS_NAME)
    if record is None:
        log.info("%s: no SHA-256 recorded for %s (written before hashes were recorded); not verified",
                 folder, WEIGHTS_NAME)
        return False
    if not weights.is_file():
        raise CheckpointError(f"cannot read {weights}: the file is missing")
    size = weights.stat().st_size
    if size != record["bytes"] or file_sha256(weights) != record["sha256"]:
        raise CheckpointError(
            f"{weights} is truncated or corrupt: it does not match the size and SHA-256 recorded in {config} "
            f"({size} bytes on disk, {record['bytes']} recorded); restore it, or load with verify=False "
            f"(--no-verify) to skip the check")
    return True


def _check_finite(state: dict[str, torch.Tensor], weights: Path) -> None:
    bad = [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(f"{weights} holds {len(bad)} non-finite tensor(s) (NaN or inf): {sorted(bad)[:8]}")


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
