"""Training checkpoints: `<output_dir>/checkpoints/step_<N>/` = a normal synseg checkpoint (config.json +
model.safetensors, loadable by `Segmenter.from_checkpoint`) plus `trainer_state.pt` (optimiser, scheduler,
scaler, RNG states, data position, counters).

`trainer_state.pt` holds only tensors and plain containers, written with `torch.save` and read back with
`torch.load(weights_only=True)`, so nothing is ever unpickled. A checkpoint folder is written under a temporary
name and renamed into place, so a crash mid-write never leaves a half checkpoint that `--resume` would pick; a
failed write (a full disk) leaves the earlier checkpoints as they were. `--resume` takes the newest checkpoint that
loads completely and moves newer ones that do not aside (`unusable_step_<N>`), saying which and why.
"""
from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from safetensors import SafetensorError

from ..model.checkpoint import CheckpointError, backbone_is_reproducible, load_checkpoint, save_checkpoint
from ..model.synseg import SynSeg
from ..outputs import OutputError, atomic_write, atomic_write_dir, os_reason, remove_temporaries

log = logging.getLogger(__name__)

STATE_NAME = "trainer_state.pt"
CHECKPOINT_DIR = "checkpoints"
STATE_FORMAT_VERSION = 1
CHECKPOINT_DIR_MODE = 0o755
_STEP_DIR = re.compile(r"^step_(\d+)$")
_UNUSABLE_PREFIX = "unusable_"


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


def write_trainer_state(folder: str | Path, state: dict) -> Path:
    """Write `state` as `folder/trainer_state.pt` atomically, in the format `load_trainer_state` reads back with
    weights_only=True (the trainer's checkpoints, and loops whose model is not a SynSeg checkpoint)."""
    return atomic_write(Path(folder) / STATE_NAME,
                        lambda tmp: torch.save({"format_version": STATE_FORMAT_VERSION, **state}, tmp))


def save_training_checkpoint(output_dir: str | Path, step: int, model: SynSeg, trainer_state: dict,
                             keep_last: int, extra: dict | None = None) -> Path:
    """Write checkpoint `step` atomically, then delete all but the newest `keep_last` checkpoints.

    Args:
        extra: more metadata for the checkpoint's config.json (e.g. the code's provenance).

    Returns:
        the checkpoint folder.

    Raises:
        OutputError: the checkpoint cannot be written (nothing of it is left; earlier checkpoints are intact).
    """
    root = Path(output_dir) / CHECKPOINT_DIR
    final = root / step_dir_name(step)
    if final.exists():
        raise CheckpointError(f"checkpoint {final} already exists; refusing to overwrite it")

    def write(folder: Path) -> None:
        save_checkpoint(model, folder, extra={**(extra or {}), "step": step})
        write_trainer_state(folder, trainer_state)

    try:
        atomic_write_dir(final, write, CHECKPOINT_DIR_MODE)
    except (OSError, SafetensorError, RuntimeError) as exc:  # torch.save reports a failed write as RuntimeError
        kept = [p.name for _, p in list_checkpoints(output_dir)]
        reason = os_reason(exc) if isinstance(exc, OSError) else str(exc).splitlines()[0]
        raise OutputError(f"cannot write checkpoint {final}: {reason}. Nothing of step {step} was kept; the "
                          f"earlier checkpoints are intact ({', '.join(kept) or 'none'}); make room, then "
                          "--resume") from exc
    for _, old in list_checkpoints(output_dir)[:-keep_last]:
        shutil.rmtree(old)
    return final


def estimate_checkpoint_bytes(model: SynSeg) -> int:
    """Bytes of one training checkpoint of `model`: the weights it stores plus AdamW's two moments per trainable
    weight (config and the rest of the trainer state are small next to them)."""
    with_backbone = not backbone_is_reproducible(model.cfg)
    weights = sum(t.numel() * t.element_size() for k, t in model.state_dict().items()
                  if with_backbone or not k.startswith("backbone."))
    trainable = sum(p.numel() * 4 for p in model.trainable_parameters().values())  # fp32 moments
    return weights + 2 * trainable


def remove_stale_temporaries(output_dir: str | Path) -> None:
    """Delete half-written checkpoint folders left by a crash during a save."""
    remove_temporaries(Path(output_dir) / CHECKPOINT_DIR, "step_*")


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


def load_resumable(output_dir: str | Path, model: SynSeg) -> tuple[Path, dict]:
    """Load the newest checkpoint whose trainer state and weights both load (weights into `model`).

    Newer checkpoints that fail are renamed `unusable_step_<N>` (kept for inspection, out of the run's way) and
    named in a warning with the reason.

    Returns:
        (the checkpoint folder, its trainer state).

    Raises:
        CheckpointError: no checkpoint loads (each one's reason is listed).
    """
    problems: list[tuple[Path, str]] = []
    for _, folder in reversed(list_checkpoints(output_dir)):
        try:
            state = load_trainer_state(folder)
            load_checkpoint(folder, model)
        except CheckpointError as exc:
            problems.append((folder, str(exc)))
            continue
        for bad, reason in problems:
            aside = _move_aside(bad)
            log.warning("resume: skipped checkpoint %s (%s); moved it to %s and fell back to %s", bad.name, reason,
                        aside, folder.name)
        return folder, state
    listed = "; ".join(f"{p.name}: {reason}" for p, reason in problems) or "there is none"
    raise CheckpointError(f"no checkpoint in {Path(output_dir) / CHECKPOINT_DIR} can be resumed from: {listed}")


def _move_aside(folder: Path) -> Path:
    """Rename a checkpoint that cannot be resumed from out of `list_checkpoints`' sight."""
    target = folder.with_name(f"{_UNUSABLE_PREFIX}{folder.name}")
    suffix = 1
    while target.exists():
        target = folder.with_name(f"{_UNUSABLE_PREFIX}{folder.name}.{suffix}")
        suffix += 1
    try:
        folder.rename(target)
    except OSError as exc:
        raise OutputError(f"resume: cannot move the unusable checkpoint {folder} aside: {os_reason(exc)}") from exc
    return target


def changed_config_keys(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts (a checkpoint's and a resumed run's)."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changed += changed_config_keys(a, b, f"{prefix}{key}.")
        elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
            changed.append(f"{prefix}{key}")
    return changed
