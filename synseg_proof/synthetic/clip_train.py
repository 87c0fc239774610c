"""Stage 1: contrastive pretraining of the tiny CLIP on caption splits (open_clip model and ClipLoss), resumable.

The optimiser, schedule and mixed precision are the core's training engine (`synseg_core.training.engine`). A run
folder holds ``trainer_state.pt`` (model, engine state, step, settings and history; rewritten atomically every
``checkpoint_every`` steps, read back with weights_only=True), ``train_log.jsonl`` and, when done, the exported CLIP
(``clip.safetensors`` + ``clip_config.json``) and ``metrics.json``. Running again on the same folder resumes from
the checkpoint; the batch order and flips are functions of (seed, step), so a resumed run sees the same batches.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from tqdm import tqdm

from synseg_core.config import ConfigError, from_dict
from synseg_core.training.distributed import resolve_device
from synseg_core.training.engine import TrainingEngine
from synseg_core.training.state import write_trainer_state
from synseg_core.training.precision import MixedPrecision, resolve_precision
from synseg_core.training.state import STATE_NAME, load_trainer_state

from .captions import swap_shape
from .clip_eval import evaluate_clip, zero_shot
from .clip_model import (ClipPretrainConfig, build_clip, clip_model_config, export_clip, load_exported_clip,
                         normalise_images)
from .domains import DomainConfig
from .writers import INFO_FILE, read_manifest

CHECKPOINT_FILE = STATE_NAME
LOG_FILE = "train_log.jsonl"
METRICS_FILE = "metrics.json"
PROGRESS_INTERVAL_S = 10.0  # tqdm refresh: the bar also goes to log files of long runs
# Data-order streams: numpy seeds are (seed, stream, counter) so order and flips never share random numbers.
_ORDER_STREAM, _FLIP_STREAM, _SWAP_STREAM = 0, 1, 2
# Settings that do not change what is trained, so a run may resume with other values for them.
RESUME_FREE_SETTINGS = frozenset({"threads", "device", "checkpoint_every", "log_every", "eval_every", "eval_seed",
                                  "zero_shot_images", "retrieval_images", "eval_batch_size", "zero_shot_templates",
                                  "save_dtype"})


@dataclass
class CaptionBatch:
    """One training batch.

    Attributes:
        images: normalised images [B, 3, S, S].
        tokens: caption tokens [B, context_length].
        negative_tokens: tokens of each caption with one shape word swapped [B, context_length], or None.
    """

    images: torch.Tensor
    tokens: torch.Tensor
    negative_tokens: torch.Tensor | None

    def to(self, device: torch.device) -> CaptionBatch:
        negatives = None if self.negative_tokens is None else self.negative_tokens.to(device)
        return CaptionBatch(self.images.to(device), self.tokens.to(device), negatives)


class CaptionBatches:
    """Batches of (images, tokens) from caption splits, in an order that depends only on (seed, step).

    Args:
        split_dirs: caption split folders (their manifests are concatenated).
        cfg: settings (batch size, image size, normalisation, flips, seed).
        tokenizer: open_clip tokenizer (captions are tokenised once, up front).

    Raises:
        ValueError: a manifest is missing or broken, or its images are not ``cfg.image_size`` square.
    """

    def __init__(self, split_dirs: Sequence[str | Path], cfg: ClipPretrainConfig,
                 tokenizer: open_clip.tokenizer.SimpleTokenizer) -> None:
        if not split_dirs:
            raise ValueError("stage-1 pretraining needs at least one caption split")
        self.records = [r for d in split_dirs for r in read_manifest(d)]
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.tokens = tokenizer([r["caption"] for r in self.records])  # [N, context_length]
        first = self._read(0)
        if first.shape[:2] != (cfg.image_size, cfg.image_size):
            raise ValueError(f"images of {split_dirs[0]} are {first.shape[1]}x{first.shape[0]}, but image_size is "
                             f"{cfg.image_size}; regenerate the split or set image_size={first.shape[0]}")
        # Decoded once (20k 64-px images: 245 MB): decoding PNGs every step kept a GPU waiting on one CPU core.
        self.images = np.empty((len(self.records), *first.shape), dtype=np.uint8)
        for index in range(len(self.records)):
            image = self._read(index)
            if image.shape != first.shape:
                raise ValueError(f"image {self.records[index]['image']} is {image.shape[1]}x{image.shape[0]}; every "
                                 f"image of a stage-1 split must be {cfg.image_size}x{cfg.image_size}")
            self.images[index] = image
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.records)

    def _read(self, index: int) -> np.ndarray:
        path = self.records[index]["image"]
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read image {path}")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def indices(self, step: int) -> np.ndarray:
        """Dataset indices of batch ``step``: consecutive slices of per-epoch permutations."""
        size = self.cfg.batch_size
        out = np.empty(size, dtype=np.int64)
        for j, position in enumerate(range(step * size, (step + 1) * size)):
            epoch, offset = divmod(position, len(self))
            if epoch != self._epoch:
                self._epoch = epoch
                self._order = np.random.default_rng([self.cfg.seed, _ORDER_STREAM, epoch]).permutation(len(self))
            out[j] = self._order[offset]
        return out

    def batch(self, step: int) -> CaptionBatch:
        """Batch number ``step`` (with shape-swapped negatives when ``cfg.shape_swap_weight`` > 0)."""
        idx = self.indices(step)
        images = self.images[idx]  # [B, S, S, 3], a copy
        if self.cfg.hflip:
            flip = np.random.default_rng([self.cfg.seed, _FLIP_STREAM, step]).random(len(idx)) < 0.5
            images[flip] = images[flip, :, ::-1]
        negatives = None
        if self.cfg.shape_swap_weight > 0:
            rng = np.random.default_rng([self.cfg.seed, _SWAP_STREAM, step])
            negatives = self.tokenizer([swap_shape(self.records[int(i)]["caption"], rng) for i in idx])
        return CaptionBatch(normalise_images(images, self.cfg.mean, self.cfg.std), self.tokens[idx], negatives)


def load_training_state(folder: Path, model: torch.nn.Module, engine: TrainingEngine,
                        cfg: ClipPretrainConfig) -> tuple[int, list[dict[str, Any]]]:
    """Restore the checkpoint in ``folder`` (model, optimiser, schedule, scaler); returns (step, history).

    Raises:
        ConfigError: the checkpoint was written with different settings (resuming would mix two runs).
        CheckpointError: the checkpoint is unreadable or of another format.
    """
    state = load_trainer_state(folder)
    plain = lambda value: json.loads(json.dumps(value))  # tuples and lists compare equal
    saved = plain(state["config"])
    changed = sorted(k for k, v in plain(cfg.to_dict()).items() if k not in RESUME_FREE_SETTINGS and v != saved.get(k))
    if changed:
        raise ConfigError(f"{folder / CHECKPOINT_FILE} was written with other settings for {changed}; use a new "
                          f"output folder or the same settings to resume")
    model.load_state_dict(state["model"])
    engine.load_state_dict(state)
    return int(state["step"]), list(state["history"])


def train_clip(cfg: ClipPretrainConfig, train_dirs: Sequence[str | Path], out_dir: str | Path,
               progress: bool = True, stop_at: int | None = None) -> dict[str, Any]:
    """Pretrain (or resume), export the CLIP and evaluate it.

    The metrics are measured on the exported file (weights as stored, e.g. float16), so they describe exactly
    what later stages load. Evaluation scenes come from the domains recorded in the caption splits.

    Args:
        cfg: settings.
        train_dirs: caption split folders.
        out_dir: run folder; a checkpoint there is resumed.
        progress: show a tqdm bar.
        stop_at: checkpoint and return after this step, without exporting (time-sliced runs); None = run to
            ``cfg.steps``.

    Returns:
        ``{"history": [...], "metrics": {...} or None when stopped early}``; both are also written to ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model_config = clip_model_config(cfg)
    model, tokenizer = build_clip(model_config)
    device = resolve_device(cfg.device, setting="device")
    model.to(device)
    data = CaptionBatches(train_dirs, cfg, tokenizer)
    domains = split_domains(train_dirs)
    precision = MixedPrecision(resolve_precision(cfg.precision, device, setting="precision"), device)
    engine = TrainingEngine(dict(model.named_parameters()), cfg.optim_config(), cfg.schedule_config(), precision,
                            part="clip")
    start, history = 0, []
    if (out / CHECKPOINT_FILE).is_file():
        start, history = load_training_state(out, model, engine, cfg)
    _rewrite_log(out / LOG_FILE, history)
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    clock = _Clock(history[-1]["elapsed_s"] if history else 0.0)
    loss_fn = ClipLoss()
    model.train()
    bar = tqdm(range(start, end), initial=start, total=cfg.steps, desc="stage-1 CLIP", disable=not progress,
               mininterval=PROGRESS_INTERVAL_S)
    for step in bar:
        batch = data.batch(step).to(device)
        lr = engine.lr()
        loss, logit_scale = _train_step(model, engine, loss_fn, batch, cfg)
        done = step + 1
        evaluate = cfg.eval_every > 0 and done % cfg.eval_every == 0
        if evaluate or done % cfg.log_every == 0 or done == cfg.steps:
            entry: dict[str, Any] = {"step": done, "loss": loss, "lr": lr,
                                     "logit_scale": logit_scale, "elapsed_s": clock.elapsed()}
            if evaluate:
                entry["zero_shot"] = _progress_zero_shot(model, tokenizer, cfg, domains)
            history.append(entry)
            with open(out / LOG_FILE, "a") as log:
                log.write(json.dumps(entry) + "\n")
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        if done % cfg.checkpoint_every == 0 or done == end:
            write_trainer_state(out, {"step": done, "model": model.state_dict(), **engine.state_dict(),
                                      "config": cfg.to_dict(), "history": history})
    if end < cfg.steps:
        return {"history": history, "metrics": None}
    metrics = _export_and_evaluate(model, model_config, cfg, out, domains)
    metrics["train_images"] = len(data)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=1) + "\n")
    return {"history": history, "metrics": metrics}


class _Clock:
    """Training wall time, continued across resumed runs."""

    def __init__(self, already: float) -> None:
        self.already, self.start = already, time.monotonic()

    def elapsed(self) -> float:
        return self.already + time.monotonic() - self.start


def _train_step(model: open_clip.CLIP, engine: TrainingEngine, loss_fn: ClipLoss, batch: CaptionBatch,
                cfg: ClipPretrainConfig) -> tuple[float, float]:
    """One engine step on one batch; returns (loss, logit scale)."""
    with engine.autocast():
        image_features, text_features, logit_scale = model(batch.images, batch.tokens)
        loss = loss_fn(image_features, text_features, logit_scale)
        if batch.negative_tokens is not None:
            loss = loss + cfg.shape_swap_weight * shape_swap_loss(
                image_features, text_features, model.encode_text(batch.negative_tokens, normalize=True), logit_scale)
    engine.apply(loss)
    engine.scheduler.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(cfg.max_logit_scale))
    return float(loss.detach()), float(logit_scale.detach())


def shape_swap_loss(image_features: torch.Tensor, text_features: torch.Tensor, negative_features: torch.Tensor,
                    logit_scale: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each image choosing its caption over its shape-swapped caption.

    Args:
        image_features, text_features, negative_features: unit-norm embeddings [B, D] (row i belongs to image i).
        logit_scale: CLIP's learned scale (already exponentiated).
    """
    logits = logit_scale * torch.stack([(image_features * text_features).sum(-1),
                                        (image_features * negative_features).sum(-1)], dim=1)  # [B, 2]
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def _export_and_evaluate(model: open_clip.CLIP, model_config: dict[str, Any], cfg: ClipPretrainConfig, out: Path,
                         domains: Sequence[DomainConfig]) -> dict[str, Any]:
    """Export the CLIP, reload the exported files and measure them."""
    export_clip(model, model_config, out, cfg.save_dtype)
    exported, exported_tokenizer = load_exported_clip(out)
    exported.to(next(model.parameters()).device)
    metrics = evaluate_clip(exported, exported_tokenizer, cfg, domains)
    metrics.update({"steps": cfg.steps, "save_dtype": cfg.save_dtype,
                    "parameters": sum(p.numel() for p in model.parameters()), "config": cfg.to_dict()})
    return metrics


def _progress_zero_shot(model: open_clip.CLIP, tokenizer: open_clip.tokenizer.SimpleTokenizer,
                        cfg: ClipPretrainConfig, domains: Sequence[DomainConfig]) -> dict[str, dict[str, float]]:
    """Zero-shot accuracies with the first template, per domain, on the weights being trained."""
    model.eval()
    result = {d.name: zero_shot(model, tokenizer, cfg, d)[cfg.zero_shot_templates[0]] for d in domains}
    model.train()
    return result


def _rewrite_log(path: Path, history: list[dict[str, float]]) -> None:
    """The log holds exactly the checkpointed history (drops lines logged after the last checkpoint)."""
    path.write_text("".join(json.dumps(entry) + "\n" for entry in history))


def split_domains(split_dirs: Sequence[str | Path]) -> list[DomainConfig]:
    """Domains recorded in the splits' ``split.json`` (deduplicated by name, in first-seen order).

    Raises:
        ValueError: a split has no readable ``split.json``.
    """
    domains: dict[str, DomainConfig] = {}
    for folder in split_dirs:
        path = Path(folder) / INFO_FILE
        try:
            info = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read {path} (written by make_dataset.py with every split): {exc}") from exc
        for values in info["domains"]:
            domains.setdefault(values["name"], from_dict(DomainConfig, values, f"{path} domain"))
    return list(domains.values())
