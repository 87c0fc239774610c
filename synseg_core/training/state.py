"""Training checkpoints: `<output_dir>/checkpoints/step_<N>/` = a normal synseg checkpoint (config.json +
model.safetensors, loadable by `Segmenter.from_checkpoint`) plus `trainer_state.pt` (optimiser, scheduler,
scaler, RNG states, data position, counters).

`trainer_state.pt` holds only tensors and plain containers, written with `torch.save` and read back with
`torch.load(weights_only=True)`, so nothing is ever unpickled. A checkpoint folder is written under a temporary
name and renamed into place, so a crash mid-write never leaves a half checkpoint that `--resume` would pick.
"""
from __future__ import annotations

import random
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..model.checkpoint import CheckpointError, save_checkpoint
from ..model.synseg import SynSeg

STATE_NAME = "trainer_state.pt"
CHECKPOINT_DIR = "checkpoints"
STATE_FORMAT_VERSION = 1
CHECKPOINT_DIR_MODE = 0o755
_STEP_DIR = re.compile(r"^step_(\d+)$")
_TMP_PREFIX = ".tmp-step_"


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def capture_rng() -> dict:
    """Python, NumPy, torch CPU (and CUDA) generator states as tensors and plain values."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Inverse of `capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete training checkpoints under `output_dir/checkpoints`, oldest first, as (step, folder)."""
    root = Path(output_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def save_training_checkpoint(output_dir: str | Path, step: int, model: SynSeg, trainer_state: dict,
                             keep_last: int) -> Path:
    """Write checkpoint `step` atomically, then delete all but the newest `keep_last` checkpoints.

    Returns:
        the checkpoint folder.
    """
    root = Path(output_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    if final.exists():
        raise CheckpointError(f"checkpoint {final} already exists; refusing to overwrite it")
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f"{_TMP_PREFIX}{step}-"))
    tmp.chmod(CHECKPOINT_DIR_MODE)  # mkdtemp makes it private; a checkpoint is meant to be shared
    try:
        save_checkpoint(model, tmp, extra={"step": step})
        torch.save({"format_version": STATE_FORMAT_VERSION, **trainer_state}, tmp / STATE_NAME)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    for _, old in list_checkpoints(output_dir)[:-keep_last]:
        shutil.rmtree(old)
    return final


def remove_stale_temporaries(output_dir: str | Path) -> None:
    """Delete half-written checkpoint folders left by a crash during a save."""
    root = Path(output_dir) / CHECKPOINT_DIR
    if root.is_dir():
        for path in root.glob(f"{_TMP_PREFIX}*"):
            shutil.rmtree(path, ignore_errors=True)


def load_trainer_state(folder: str | Path) -> dict:
    """The trainer state of a checkpoint folder (read with weights_only=True).

    Raises:
        CheckpointError: missing, unreadable or of another format version.
    """
    path = Path(folder) / STATE_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} not found: {folder} is not a training checkpoint (cannot resume from it)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated/corrupt files raise several types
        raise CheckpointError(f"cannot read {path} (truncated or corrupt?): {exc}") from exc
    if not isinstance(state, dict) or state.get("format_version") != STATE_FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a synseg trainer state of format {STATE_FORMAT_VERSION}")
    return state
