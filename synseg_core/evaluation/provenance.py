"""Which checkpoint an evaluation scored: a short label for output names, and its provenance for the results.

The label names a checkpoint of a training run by the run folder and the checkpoint folder (`tiny-step_00000020`,
`tiny-best`), any other folder or file by its name, a bundled model by its name. The provenance records the path,
the checkpoint's own metadata (step, the training code's git commit and package versions, its best score where it
is `best/`) and the start entries of the training run that wrote it (`run.json`), where those exist.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from synseg_core.model.checkpoint import CheckpointError, read_checkpoint_config
from synseg_core.inference.segmenter import BUNDLED_CHECKPOINTS
from synseg_core.run_metadata import RUN_METADATA_NAME, read_run_metadata

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def checkpoint_folder(checkpoint: str) -> Path | None:
    """The checkpoint folder `checkpoint` names (bundled names included); None for config names and JSON files."""
    if checkpoint in BUNDLED_CHECKPOINTS:
        return BUNDLED_CHECKPOINTS[checkpoint]
    path = Path(checkpoint)
    folder = path.parent if path.suffix == ".safetensors" else path
    return folder.resolve() if folder.is_dir() else None


def _run_folder(folder: Path) -> Path | None:
    """The training run folder that holds `folder` as `<run>/checkpoints/<name>` (it has a run.json)."""
    run = folder.parent.parent
    return run if (run / RUN_METADATA_NAME).is_file() else None


def checkpoint_label(checkpoint: str) -> str:
    """A file-name-safe label: '<run>-<checkpoint folder>' inside a training run, else the folder/file/name."""
    folder = checkpoint_folder(checkpoint)
    if checkpoint in BUNDLED_CHECKPOINTS or folder is None:
        name = Path(checkpoint).stem if checkpoint.endswith(".json") else checkpoint
    else:
        run = _run_folder(folder)
        name = f"{run.name}-{folder.name}" if run is not None else folder.name
    return _UNSAFE.sub("-", name).strip("-") or "checkpoint"


def checkpoint_provenance(checkpoint: str) -> dict[str, Any]:
    """Where the scored weights came from (plain JSON values)."""
    folder = checkpoint_folder(checkpoint)
    record: dict[str, Any] = {"checkpoint": checkpoint, "label": checkpoint_label(checkpoint),
                              "path": str(folder) if folder is not None else None}
    if folder is None:
        record["kind"] = "model config (random or pretrained-tag weights)"
        return record
    record["kind"] = "checkpoint folder"
    try:
        _, meta = read_checkpoint_config(folder)
        record["metadata"] = {k: v for k, v in meta.items() if k != "config"}
    except CheckpointError as exc:  # the evaluation itself reports an unreadable checkpoint; keep the reason here
        record["metadata_error"] = str(exc)
    run = _run_folder(folder)
    if run is not None:
        record["training_run"] = {"folder": str(run), "starts": read_run_metadata(run)}
    return record
