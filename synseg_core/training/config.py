"""Training configuration: dataclasses loaded from YAML, with strict `key=value` dotlist overrides.

An unknown key is an error that lists the valid keys, and a value of the wrong type is an error naming the key
(both through `synseg_core.config.from_dict`). Defaults are the paper's setting plus the proposals of
docs/method.md §7 for what it leaves open.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from ..model.backbone import list_template_sets
from ..config import ConfigError, SynSegConfig, from_dict, get_model_config, load_config_file
from ..data import CaptionDataConfig
from .overrides import apply_overrides, deep_merge, parse_yaml

Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass
class ModelSection:
    """Which model is trained and where its initial weights come from.

    Attributes:
        config: a bundled model-config name (see `synseg_core.list_models()`) or a path to a model-config JSON.
        overrides: nested values merged over the model config, e.g. `{"loss": {"area_weight": 0.1}}` or
            `{"backbone": {"pretrained": null}}`; checked like the model config itself.
        init_checkpoint: a synseg checkpoint whose weights initialise the model (must match the architecture).
        clipseg_weights: a Hugging Face CLIPSeg state dict (.safetensors or .bin) for the decoder and FiLM.
            Both are ignored by `--resume`, which restores everything from the run's own checkpoint.
    """

    config: str = "vitb16-rd64-refined"
    overrides: dict = field(default_factory=dict)
    init_checkpoint: str | None = None
    clipseg_weights: str | None = None


@dataclass
class TextConfig:
    """Training text embeddings from the frozen text tower (see `synseg_core.training.text`).

    Attributes:
        templates: prompt-template set (the paper does not say; proposal: the single "a photo of a {}.").
        chunk: categories per text-encoder call (fixed, so embeddings do not depend on the batch's other words).
        cache_size: embeddings kept in memory (more = fewer recomputations of frequent categories).
    """

    templates: str = "single"
    chunk: int = 64
    cache_size: int = 16384


@dataclass
class LoaderConfig:
    """Batching of the caption samples (per rank).

    Attributes:
        batch_size: images per step and rank, before skipped samples are dropped (CLIPSeg trained with 64).
        num_workers: DataLoader worker processes (a resumed run needs the same number).
        drop_last: map-style datasets: drop each epoch's last incomplete batch.
    """

    batch_size: int = 64
    num_workers: int = 8
    drop_last: bool = True


@dataclass
class OptimConfig:
    """AdamW over the trainable parameters only (docs/method.md §7). Biases and norm weights get no weight decay.

    Attributes:
        lr: learning rate of the pretrained decoder and FiLM (fine-tuning CLIPSeg).
        projector_lr: learning rate of the new FSS projector.
        grad_clip_norm: clip the global gradient norm to this value (None = no clipping).
    """

    lr: float = 1e-4
    projector_lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip_norm: float | None = 1.0


@dataclass
class ScheduleConfig:
    """Linear warm-up from 0, then cosine decay to `min_lr` at `max_steps` (every parameter group)."""

    max_steps: int = 60000
    warmup_steps: int = 1000
    min_lr: float = 1e-6


@dataclass
class AbsentConfig:
    """Absent-category pairs for the `loss.absent_weight` extension (used only when that weight is > 0).

    Attributes:
        per_image: at most this many categories of OTHER images in the batch, not named for an image, are paired
            with it as negatives.
    """

    per_image: int = 4


@dataclass
class CheckpointConfig:
    """Training-state checkpoints under `<output_dir>/checkpoints/step_<N>/`.

    Attributes:
        every: save every N optimiser steps (and at the end).
        keep_last: keep only the newest N checkpoints.
    """

    every: int = 1000
    keep_last: int = 3


@dataclass
class LoggingConfig:
    """Attributes:
        every: write averaged loss terms to `<output_dir>/metrics.jsonl` every N steps.
        progress_bar: show a tqdm bar (rank 0 only).
        plot: draw `<output_dir>/loss_curves.png` from the metrics at the end of training.
        tensorboard: also write the metrics (and validation predictions) as TensorBoard event files there.
    """

    every: int = 10
    progress_bar: bool = True
    plot: bool = True
    tensorboard: bool = True


@dataclass
class EvalConfig:
    """Validation while training (`synseg_core.training.validation`), with the evaluation harness.

    Attributes:
        every: validate every N steps and at the end (0 = never).
        dataset: an evaluation dataset name (`synseg_core.evaluation.list_datasets()`, `custom` included).
        data_root: its root folder.
        classes: class-list file of a `custom` dataset.
        background_first: `custom`: the first class is background.
        protocol: evaluation protocol (`tcl`, or `model` = the checkpoint's inference settings).
        overrides: inference settings over the protocol's (short_side, window, stride, templates, thresholds).
        limit: validate on the first N images only (null = all).
        thresholds: background thresholds to sweep (the best one is reported); empty = the protocol's threshold.
        num_images: prediction images per validation in TensorBoard.
        best_metric: the metric whose highest value is kept in `checkpoints/best/`.
    """

    every: int = 0
    dataset: str | None = None
    data_root: str | None = None
    classes: str | None = None
    background_first: bool = False
    protocol: str = "tcl"
    overrides: dict = field(default_factory=dict)
    limit: int | None = None
    thresholds: list[float] = field(default_factory=list)
    num_images: int = 4
    best_metric: str = "val_miou"


@dataclass
class RuntimeConfig:
    """Where and how the steps run.

    Attributes:
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N" (under torchrun: the local rank's GPU).
        precision: "auto" = fp16 autocast with a gradient scaler on CUDA, bf16 autocast on CPUs with native bf16,
            else fp32. fp16 needs CUDA.
        num_threads: torch intra-op threads (None = torch's default).
        distributed_backend: "auto" = nccl on CUDA, gloo on CPU.
        distributed_timeout_s: collective timeout (long enough for the rank-0 evaluation hook).
        max_consecutive_nonfinite: stop with an error after this many non-finite steps in a row.
        max_skip_ratio: stop with an error when more than this fraction of the samples read so far were skipped
            (checked at every log and before every checkpoint; a run with no usable sample always stops).
        cast_frozen_clip: with bf16/fp16, store the frozen CLIP image tower in that dtype: half its memory, no
            weight casts per step, and no slow CPU path (autocast over open_clip attention whose weights do not
            require grad copies the in-projection weight per token: ~8x slower than fp32 on a Xeon with AMX).
            Checkpoints that carry the CLIP weights (random, inline or local CLIPs) then carry the image tower in
            that dtype. The text tower stays fp32 (its embeddings are cached).
    """

    device: str = "auto"
    precision: Precision = "auto"
    num_threads: int | None = None
    distributed_backend: Literal["auto", "gloo", "nccl"] = "auto"
    distributed_timeout_s: int = 1800
    max_consecutive_nonfinite: int = 10
    max_skip_ratio: float = 0.5
    cast_frozen_clip: bool = True


@dataclass
class TrainConfig:
    """Everything one training run needs; `output_dir` receives checkpoints, metrics and plots."""

    output_dir: str = "runs/synseg"
    seed: int = 0
    model: ModelSection = field(default_factory=ModelSection)
    text: TextConfig = field(default_factory=TextConfig)
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)  # no default path: a dataset is required
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    absent: AbsentConfig = field(default_factory=AbsentConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a training YAML (None = all defaults), apply dotlist overrides and validate everything.

    Raises:
        ConfigError: unreadable file, unknown key (the message lists the valid ones), wrong type or bad value.
    """
    data: Any = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read training config {path}: {exc}") from exc
        data = parse_yaml(text, str(path)) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    cfg = from_dict(TrainConfig, apply_overrides(data, overrides), "config")
    validate_train_config(cfg)
    return cfg


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate_train_config(cfg: TrainConfig) -> None:
    """Range checks that types alone cannot express; also resolves the model config once to check it."""
    s, o = cfg.schedule, cfg.optim
    _require(s.max_steps >= 1, f"schedule.max_steps must be >= 1, got {s.max_steps}")
    _require(0 <= s.warmup_steps <= s.max_steps,
             f"schedule.warmup_steps must be in [0, max_steps={s.max_steps}], got {s.warmup_steps}")
    for name in ("lr", "projector_lr"):
        _require(getattr(o, name) > 0, f"optim.{name} must be > 0, got {getattr(o, name)}")
    _require(0 <= s.min_lr <= min(o.lr, o.projector_lr),
             f"schedule.min_lr must be in [0, min(optim.lr, optim.projector_lr)], got {s.min_lr}")
    _require(o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    _require(all(0 <= b < 1 for b in o.betas), f"optim.betas must be in [0, 1), got {list(o.betas)}")
    _require(o.grad_clip_norm is None or o.grad_clip_norm > 0,
             f"optim.grad_clip_norm must be > 0 or null, got {o.grad_clip_norm}")
    for section, name in (("text", "chunk"), ("loader", "batch_size"), ("checkpoint", "every"), ("checkpoint", "keep_last"), ("logging", "every"),
                          ("runtime", "max_consecutive_nonfinite"), ("runtime", "distributed_timeout_s")):
        value = getattr(getattr(cfg, section), name)
        _require(value >= 1, f"{section}.{name} must be >= 1, got {value}")
    _require(cfg.text.cache_size >= cfg.text.chunk,
             f"text.cache_size ({cfg.text.cache_size}) must be >= text.chunk ({cfg.text.chunk})")
    _require(cfg.loader.num_workers >= 0, f"loader.num_workers must be >= 0, got {cfg.loader.num_workers}")
    _require(cfg.eval.every >= 0, f"eval.every must be >= 0 (0 = off), got {cfg.eval.every}")
    _require(0 <= cfg.runtime.max_skip_ratio <= 1,
             f"runtime.max_skip_ratio must be in [0, 1], got {cfg.runtime.max_skip_ratio}")
    _require(cfg.absent.per_image >= 1, f"absent.per_image must be >= 1, got {cfg.absent.per_image}")
    _require(cfg.runtime.num_threads is None or cfg.runtime.num_threads >= 1,
             f"runtime.num_threads must be >= 1 or null, got {cfg.runtime.num_threads}")
    _require(cfg.text.templates in list_template_sets(),
             f"text.templates: {cfg.text.templates!r} is not one of {list_template_sets()}")
    model_cfg = resolve_model_config(cfg.model)
    _require(cfg.data.augment.image_size == model_cfg.preprocess.train_size,
             f"data.augment.image_size ({cfg.data.augment.image_size}) differs from the model's preprocess.train_size "
             f"({model_cfg.preprocess.train_size}); set both (model.overrides.preprocess.train_size) to the same size")


def resolve_model_config(section: ModelSection) -> SynSegConfig:
    """The model config named by `section.config` (bundled name or JSON path) with `section.overrides` merged in."""
    looks_like_path = section.config.endswith(".json") or "/" in section.config
    base = load_config_file(section.config) if looks_like_path else get_model_config(section.config)
    try:
        return SynSegConfig.from_dict(deep_merge(base.to_dict(), section.overrides))
    except ConfigError as exc:
        raise ConfigError(f"model.overrides: {exc}") from exc
