"""Mask-supervised training of the decoder and FiLM: the CLIPSeg analogue of stage 2, and the supervised ceiling.

Per-pixel binary cross-entropy on (image, category) pairs, for the categories an image contains and for sampled
absent ones (CLIPSeg trained its decoder with BCE on PhraseCut phrases). The CLIP stays frozen; the optimiser,
schedule, mixed precision, text cache and resumable checkpoints are the MCCL trainer's (`synseg_core.training`).

The result is written twice: as a synseg checkpoint, and as a CLIPSeg-style decoder state dict
(``decoder.*`` names, what `synseg_core.model.clipseg_import` reads from Hugging Face's CLIPSeg), so that stage 3
starts through exactly the import path the paper's training uses.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from synseg_core.model.checkpoint import load_checkpoint, save_checkpoint
from synseg_core.model.clipseg_import import HF_PREFIX
from synseg_core.config import ConfigError, SynSegConfig, from_dict
from synseg_core.model.synseg import SynSeg
from synseg_core.training.config import OptimConfig, ScheduleConfig
from synseg_core.training.engine import TrainingEngine
from synseg_core.training.metrics import METRICS_NAME, MetricsLogger
from synseg_core.training.precision import MixedPrecision, resolve_precision
from synseg_core.training.state import latest_checkpoint, load_trainer_state, remove_stale_temporaries, save_training_checkpoint
from synseg_core.training.text import ChunkedTextCache
from .masks import MaskBatch, MaskPairs

log = logging.getLogger(__name__)

FINAL_DIR = "model"
CPU = torch.device("cpu")
CLIPSEG_FILE = "clipseg_decoder.safetensors"


@dataclass
class SupervisedConfig:
    """Settings of one mask-supervised run (the schedule's ``max_steps`` is the run length).

    Attributes:
        batch_size: images per step.
        absent_per_image: absent categories paired with each image (all-zero masks).
        hflip_prob: horizontal-flip probability.
        templates: prompt-template set of the text embeddings (as the MCCL trainer's ``text.templates``).
        text_chunk: categories per text-encoder call.
        seed: seeds the batches and the decoder's random initialisation.
        optim: AdamW settings (``projector_lr`` is unused: the FSS projector gets no gradient from masks).
        schedule: warm-up + cosine schedule; ``max_steps`` = steps of the run.
        checkpoint_every: resumable checkpoint every N steps.
        keep_last: checkpoints kept.
        log_every: loss record in ``metrics.jsonl`` every N steps.
        num_threads: torch intra-op threads (None = torch's default).
        precision: autocast of the forward on the CPU ("fp32", "bf16", or "auto" = bf16 on CPUs with native bf16).
    """

    batch_size: int = 32
    absent_per_image: int = 3
    hflip_prob: float = 0.5
    templates: str = "single"
    text_chunk: int = 64
    seed: int = 0
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, projector_lr=1e-3))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(max_steps=600, warmup_steps=30,
                                                                           min_lr=1e-5))
    checkpoint_every: int = 100
    keep_last: int = 2
    log_every: int = 10
    num_threads: int | None = None
    precision: Literal["auto", "fp32", "bf16"] = "fp32"

    def __post_init__(self) -> None:
        for name in ("batch_size", "text_chunk", "checkpoint_every", "keep_last", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"supervised.{name} must be >= 1, got {getattr(self, name)}")
        if self.schedule.max_steps < 1 or not 0 <= self.schedule.warmup_steps <= self.schedule.max_steps:
            raise ConfigError(f"supervised.schedule needs max_steps >= 1 and 0 <= warmup_steps <= max_steps, got "
                              f"{self.schedule.max_steps} and {self.schedule.warmup_steps}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SupervisedConfig":
        """Strict: an unknown key is a ConfigError listing the valid ones."""
        return from_dict(cls, data, "supervised")


def mask_loss(model: SynSeg, batch: MaskBatch, text: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel BCE of the decoder's logits [M, S, S] against the batch's masks."""
    logits = model.decode(batch.images, text, batch.owner).logits
    return F.binary_cross_entropy_with_logits(logits.float(), batch.masks)


def export_clipseg_decoder(model: SynSeg, path: str | Path) -> Path:
    """Write the decoder and FiLM as a CLIPSeg state dict (``decoder.<name>``), readable by `import_clipseg_decoder`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"{HF_PREFIX}{k}": v.detach().contiguous().cpu() for k, v in model.decoder.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "source": "synseg mask-supervised decoder"})
    tmp.replace(path)
    return path


class SupervisedTrainer:
    """Trains ``model``'s decoder and FiLM on ``data`` with masks; checkpoints go to ``out_dir/checkpoints``."""

    def __init__(self, model: SynSeg, data: MaskPairs, cfg: SupervisedConfig, out_dir: str | Path):
        self.model, self.data, self.cfg = model.train(), data, cfg
        self.out_dir = Path(out_dir)
        precision = MixedPrecision(resolve_precision(cfg.precision, CPU, "supervised.precision"), CPU)
        self.engine = TrainingEngine(model.trainable_parameters(), cfg.optim, cfg.schedule, precision)
        self.text = ChunkedTextCache(model.backbone, cfg.templates, cfg.text_chunk, max(cfg.text_chunk, 4096))
        self.metrics = MetricsLogger(self.out_dir / METRICS_NAME)
        self.step = 0

    def resume(self) -> None:
        """Continue from the newest checkpoint in ``out_dir`` (if any)."""
        folder = latest_checkpoint(self.out_dir)
        if folder is None:
            return
        state = load_trainer_state(folder)
        load_checkpoint(folder, self.model)
        self.engine.load_state_dict(state)
        self.step = state["step"]
        self.metrics.truncate_after(self.step)
        log.info("resumed mask-supervised training from %s (step %d)", folder, self.step)

    def train_step(self) -> float:
        batch = self.data.batch(self.step, self.cfg.batch_size)
        text = self.text(batch.categories)  # fp32 and cached, as in the MCCL trainer
        with self.engine.autocast():
            loss = mask_loss(self.model, batch, text)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"step {self.step}: the mask loss is {loss.item()}; lower optim.lr")
        grad_norm, applied = self.engine.apply(loss)
        if not applied:
            raise FloatingPointError(f"step {self.step}: the gradient norm is {grad_norm}; lower optim.lr")
        self.engine.scheduler.step()
        self.step += 1
        return loss.item()

    def fit(self, progress: bool = True, stop_at: int | None = None) -> None:
        """Train to the schedule's end, or only to `stop_at` (with a checkpoint there, to resume later)."""
        total = self.cfg.schedule.max_steps
        end = total if stop_at is None else min(stop_at, total)
        window: list[float] = []
        with tqdm(total=total, initial=self.step, desc="mask training", unit="step", disable=not progress) as bar:
            while self.step < end:
                window.append(self.train_step())
                bar.update(1)
                if self.step % self.cfg.log_every == 0 or self.step == total:
                    self.metrics.log("train", self.step, loss=sum(window) / len(window),
                                     lr=self.engine.lr())
                    bar.set_postfix(loss=f"{sum(window) / len(window):.4f}", refresh=False)
                    window = []
                if self.step % self.cfg.checkpoint_every == 0 or self.step == end:
                    state = {"step": self.step, **self.engine.state_dict(), "config": dataclasses.asdict(self.cfg)}
                    save_training_checkpoint(self.out_dir, self.step, self.model, state, self.cfg.keep_last)


def train_supervised(model_config: SynSegConfig, split_dir: str | Path, out_dir: str | Path, cfg: SupervisedConfig,
                     progress: bool = True, stop_at: int | None = None) -> Path | None:
    """Train (or resume, or skip when finished) one mask-supervised run.

    Writes ``out_dir/model/`` (a synseg checkpoint) and ``out_dir/clipseg_decoder.safetensors``.

    Args:
        model_config: the architecture (its CLIP weights are loaded and stay frozen).
        split_dir: a segmentation split (see `MaskPairs`).
        out_dir: run folder (resumes from its newest checkpoint).
        cfg: run settings.
        stop_at: checkpoint and return None after this step (continue later by calling again without it).

    Returns:
        the folder of the final synseg checkpoint (None when stopped early).
    """
    out = Path(out_dir)
    final = out / FINAL_DIR
    if (final / "config.json").is_file() and (out / CLIPSEG_FILE).is_file():
        return final
    threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        torch.manual_seed(cfg.seed)
        model = SynSeg(model_config)
        data = MaskPairs(split_dir, model_config.preprocess.train_size, model_config.preprocess.mean,
                         model_config.preprocess.std, cfg.absent_per_image, cfg.hflip_prob, cfg.seed)
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
        trainer = SupervisedTrainer(model, data, cfg, out)
        trainer.resume()
        trainer.fit(progress, stop_at)
        if trainer.step < cfg.schedule.max_steps:
            return None
        export_clipseg_decoder(model, out / CLIPSEG_FILE)
        save_checkpoint(model.eval(), final, extra={"stage": "mask-supervised", "steps": trainer.step,
                                                    "split": str(split_dir)})
    finally:
        torch.set_num_threads(threads)
    return final
