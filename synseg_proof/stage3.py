"""Stage 3 of the proof: caption-only MCCL runs through the project's trainer, scored on the validation split while
they train (the trainer's evaluation hook), resumable and skipped once finished."""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from synseg_core.evaluation.datasets import SegmentationDataset
from synseg_core.training import load_train_config, run_training
from synseg_core.training.metrics import METRICS_NAME, read_metrics
from synseg_core.training.state import CHECKPOINT_DIR, list_checkpoints, step_dir_name
from synseg_core.training.validation import Validation

DONE_FILE = "done.json"


@dataclass(frozen=True)
class Stage3Run:
    """One caption-only run.

    Attributes:
        name: folder name under the chain's stage-3 folder.
        overrides: `key=value` overrides over the training YAML (besides paths and seed).
        seed: training seed (`seed` and `data.seed`).
        from_init: start from the stage-2 decoder (through the CLIPSeg import); False = random decoder.
    """

    name: str
    overrides: tuple[str, ...] = ()
    seed: int = 0
    from_init: bool = True


@dataclass
class Stage3Paths:
    """Inputs every run shares: the training YAML, the model config, the stage-2 CLIPSeg file, the captions and
    their image size (the model's train size)."""

    config: Path
    model_config: Path
    clipseg_weights: Path
    captions: Path
    image_size: int
    root: Path = field(default=Path("stage3"))


def train_arguments(run: Stage3Run, paths: Stage3Paths) -> list[str]:
    """`training/train.py` arguments of a run (also what the results cite as the command)."""
    clipseg = str(paths.clipseg_weights) if run.from_init else "null"
    return ["--config", str(paths.config), f"output_dir={paths.root / run.name}", f"seed={run.seed}",
            f"data.seed={run.seed}", f"model.config={paths.model_config}", f"model.clipseg_weights={clipseg}",
            f"data.path={paths.captions}", f"data.augment.image_size={paths.image_size}", *run.overrides]


def validation_hook(dataset: SegmentationDataset, thresholds: Sequence[float]) -> Validation:
    """Trainer evaluation hook: best validation mIoU over the background thresholds (plus its threshold and
    foreground IoU) of the model being trained, with its own inference settings (the core's `Validation`)."""
    return Validation(dataset, protocol="model", thresholds=thresholds)


def run_stage3(run: Stage3Run, paths: Stage3Paths, dataset: SegmentationDataset, thresholds: Sequence[float]
               ) -> dict:
    """Train one run (resuming an interrupted one; returning the record of a finished one).

    Returns:
        ``{"name", "command", "evals": [{"step", "val_miou", "val_threshold", "val_foreground_iou"}, ...]}``.
    """
    out = paths.root / run.name
    done = out / DONE_FILE
    if done.is_file():
        return json.loads(done.read_text())
    argv = train_arguments(run, paths)
    cfg = load_train_config(argv[1], argv[2:])
    run_training(cfg, resume=bool(list_checkpoints(out)), evaluate=validation_hook(dataset, thresholds))
    evals = {r["step"]: {k: r[k] for k in ("step", "val_miou", "val_threshold", "val_foreground_iou")}
             for r in read_metrics(out / METRICS_NAME) if r.get("type") == "eval"}
    record = {"name": run.name, "command": "python training/train.py " + shlex.join(argv),
              "evals": [evals[s] for s in sorted(evals)]}
    done.write_text(json.dumps(record, indent=1) + "\n")
    return record


def best_eval(record: dict) -> dict:
    """The validation record with the highest mIoU (the earliest step on ties)."""
    if not record["evals"]:
        raise ValueError(f"stage-3 run {record['name']} has no validation record (is eval.every > 0?)")
    return max(record["evals"], key=lambda e: (e["val_miou"], -e["step"]))


def checkpoint_of(paths: Stage3Paths, run_name: str, step: int) -> Path:
    """The synseg checkpoint a run wrote at `step`.

    Raises:
        FileNotFoundError: the run kept no checkpoint of that step (raise `checkpoint.keep_last`).
    """
    folder = paths.root / run_name / CHECKPOINT_DIR / step_dir_name(step)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: run {run_name} did not keep step {step}; every evaluated "
                                "step needs a checkpoint (checkpoint.every = eval.every, keep_last >= their count)")
    return folder
