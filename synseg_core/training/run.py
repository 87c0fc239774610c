"""One training run from a `TrainConfig`: process group, data, validation set, model initialisation, resume,
fit, plot.

Every check that can fail on user input (config, data, validation set, checkpoints, output folder: writable, with
room for a checkpoint) runs before the first step. The run folder gets the config copy, `run.json` (where each
start came from), `metrics.jsonl` with TensorBoard event files, the skip report, checkpoints and `checkpoints/best/`.
"""
from __future__ import annotations

import contextlib
import logging
import random
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import yaml

from ..config import ConfigError
from ..data import CaptionLoader, build_caption_dataset
from ..model.checkpoint import load_checkpoint
from ..model.clipseg_import import import_clipseg_decoder
from ..model.synseg import SynSeg, create_model
from ..outputs import atomic_write_text, check_writable_dir
from ..run_metadata import RUN_METADATA_NAME, append_run_metadata, code_provenance, run_metadata
from .best import best_dir
from .config import ModelSection, TrainConfig, resolve_model_config
from .distributed import DistInfo, cleanup_distributed, env_dist_info, init_distributed, resolve_device
from .metrics import METRICS_NAME
from .plot import PLOT_NAME, plot_metrics
from .precision import resolve_precision
from .skip_report import SKIP_REPORT_NAME
from .state import estimate_checkpoint_bytes, list_checkpoints, remove_stale_temporaries
from .trainer import EvalHook, Trainer, TrainSummary
from .validation import build_validation

log = logging.getLogger(__name__)

CONFIG_COPY_NAME = "train_config.yaml"


def seed_everything(seed: int) -> None:
    """Same seed on every rank, so a random-weight model starts identical everywhere."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def initial_model(section: ModelSection) -> SynSeg:
    """The model to train: the configured architecture with weights from `init_checkpoint` / `clipseg_weights`."""
    model = create_model(resolve_model_config(section))
    if section.init_checkpoint:
        load_checkpoint(section.init_checkpoint, model)
        log.info("initialised from synseg checkpoint %s", section.init_checkpoint)
    if section.clipseg_weights:
        import_clipseg_decoder(model, section.clipseg_weights)
        log.info("decoder and FiLM initialised from CLIPSeg weights %s", section.clipseg_weights)
    return model


def build_loader(cfg: TrainConfig, info: DistInfo, device: torch.device) -> CaptionLoader:
    """This rank's caption loader; a missing or empty dataset is a ConfigError naming it."""
    if info.distributed and cfg.data.format == "webdataset" and not cfg.data.repeat:
        raise ConfigError("data.repeat must be true for webdataset under torchrun: ranks would run out of data "
                          "at different steps")
    preprocess = resolve_model_config(cfg.model).preprocess
    try:
        dataset = build_caption_dataset(cfg.data, preprocess.mean, preprocess.std)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"data ({cfg.data.format} at {cfg.data.path!r}): {exc}") from exc
    return CaptionLoader(dataset, cfg.loader.batch_size, cfg.data.augment.image_size,
                         num_workers=cfg.loader.num_workers, shuffle=cfg.data.shuffle, seed=cfg.data.seed,
                         drop_last=cfg.loader.drop_last, pin_memory=device.type == "cuda")


def check_output_dir(output_dir: Path, resume: bool) -> None:
    """A fresh run must not mix with an old run's checkpoints; `--resume` needs one; the folder must be writable.

    Raises:
        ConfigError: checkpoints where a fresh run starts, or none to resume from.
        OutputError: the folder cannot be created or written (read-only, under a file, under /proc, ...).
    """
    found = list_checkpoints(output_dir)
    if resume and not found:
        raise ConfigError(f"--resume: no checkpoint in {output_dir / 'checkpoints'} to resume from")
    if not resume and (found or best_dir(output_dir).exists()):
        latest = f"latest: step {found[-1][0]}" if found else f"a best checkpoint in {best_dir(output_dir)}"
        raise ConfigError(f"output_dir {output_dir} already holds checkpoints ({latest}); "
                          "pass --resume to continue that run, or choose another output_dir")
    check_writable_dir(output_dir, what="output_dir")


ABANDONED = (METRICS_NAME, RUN_METADATA_NAME, SKIP_REPORT_NAME, "skipped.rank*.jsonl", "events.out.tfevents.*")


def prepare_output_dir(cfg: TrainConfig, resume: bool) -> None:
    """Create the run folder (rank 0), drop half-written checkpoints and, for a fresh run, the logs of an abandoned
    run without checkpoints (its curves must not continue into this run's); write the config copy."""
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output_dir)
    if not resume:
        for pattern in ABANDONED:
            for path in output_dir.glob(pattern):
                path.unlink()
    atomic_write_text(output_dir / CONFIG_COPY_NAME, yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False))


def evaluation_hook(cfg: TrainConfig, evaluate: EvalHook | None) -> EvalHook | None:
    """The hook that validates every `eval.every` steps: the caller's, else the one `eval.dataset` configures.

    Raises:
        ConfigError: eval.every without a validation set, or a bad eval section or dataset.
    """
    hook = evaluate or build_validation(cfg.eval)
    if cfg.eval.every and hook is None:
        raise ConfigError(f"eval.every={cfg.eval.every} needs a validation set: eval.dataset (one of the evaluation "
                          "datasets, e.g. custom) and eval.data_root (+ eval.classes for custom); or eval.every=0")
    if hook is not None and not cfg.eval.every:
        log.warning("a validation set is configured but eval.every=0: the run will not validate")
    return hook


@contextlib.contextmanager
def training_session(cfg: TrainConfig, *, resume: bool = False, evaluate: EvalHook | None = None,
                     argv: Sequence[str] | None = None) -> Iterator[Trainer]:
    """Set up a run (process group, data, validation set, model, optimiser, resumed state) and yield its `Trainer`;
    the process group is left and the thread count restored on exit.

    Raises:
        ConfigError / CheckpointError: bad settings, data, validation set or checkpoint (before any step).
        OutputError: the output folder cannot be written or lacks room for a checkpoint (before any step).
    """
    evaluate = evaluation_hook(cfg, evaluate)
    info = env_dist_info()
    device = resolve_device(cfg.runtime.device, info)
    resolve_precision(cfg.runtime.precision, device)  # fail on fp16-without-CUDA before any data is read
    output_dir = Path(cfg.output_dir)
    check_output_dir(output_dir, resume)
    threads = torch.get_num_threads()
    if cfg.runtime.num_threads:
        torch.set_num_threads(cfg.runtime.num_threads)
    init_distributed(info, device, cfg.runtime.distributed_backend, cfg.runtime.distributed_timeout_s)
    try:
        loader = build_loader(cfg, info, device)
        seed_everything(cfg.seed)
        model = create_model(resolve_model_config(cfg.model)) if resume else initial_model(cfg.model)
        check_writable_dir(output_dir, estimate_checkpoint_bytes(model), what="output_dir")
        entry = run_metadata(device, world_size=info.world_size, seed=cfg.seed, argv=argv)
        trainer = Trainer(cfg, model, loader, device=device, info=info, evaluate=evaluate,
                          provenance=code_provenance(entry))
        if info.is_main:
            prepare_output_dir(cfg, resume)
        if resume:
            trainer.resume()
        if trainer.records.log is not None:
            trainer.records.log.check()
            append_run_metadata(output_dir, {**entry, "resumed": resume, "start_step": trainer.step})
        log.info("training %s on %s (%s, %d rank(s)) from step %d to %d", model.cfg.name, device,
                 trainer.precision.precision, info.world_size, trainer.step, cfg.schedule.max_steps)
        yield trainer
    finally:
        cleanup_distributed()
        torch.set_num_threads(threads)  # in-process callers (tests, notebooks) get their setting back


def run_training(cfg: TrainConfig, *, resume: bool = False, evaluate: EvalHook | None = None,
                 stop_at: int | None = None, argv: Sequence[str] | None = None) -> TrainSummary:
    """Train as `cfg` says (single process, or one rank of a torchrun job), then plot the loss curves.

    Args:
        cfg: a validated training config (`load_train_config`).
        resume: continue from the newest checkpoint in `cfg.output_dir` (weights, optimiser, scheduler, scaler,
            RNG and data position).
        evaluate: evaluation hook called every `eval.every` steps (default: the validation `cfg.eval` configures).
        stop_at: stop after this step with a checkpoint (the schedule still spans `schedule.max_steps`), e.g. to
            split a long run into jobs of a cluster's time limit; continue with `resume=True`.
        argv: the command line recorded in `run.json` (default: `sys.argv`).

    Raises:
        ConfigError / CheckpointError: bad settings, data, validation set or checkpoint (before any step).
        OutputError: the output folder cannot be written (before any step), or a write failed during the run
            (earlier checkpoints are intact).
        TrainingError: the run had to stop (see `Trainer.fit`).
    """
    with training_session(cfg, resume=resume, evaluate=evaluate, argv=argv) as trainer:
        try:
            summary = trainer.fit(stop_at)
        finally:
            if trainer.records.log is not None:
                trainer.records.log.close()
        if trainer.info.is_main and cfg.logging.plot:
            plot_metrics(Path(cfg.output_dir) / METRICS_NAME, Path(cfg.output_dir) / PLOT_NAME)
        return summary


def _plain(value: object) -> object:
    """Tuples as lists, so the config copy is plain YAML that `load_train_config` reads back."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
