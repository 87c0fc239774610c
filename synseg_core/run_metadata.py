"""Where a run came from: command line, git commit and dirty flag, package versions, device, world size, seed.

Training appends one entry per start (a fresh run, then each `--resume`) to `<output_dir>/run.json`; every
training checkpoint carries the code's git commit; evaluation results carry the same metadata plus the
provenance of the checkpoint they scored.
"""
from __future__ import annotations

import json
import platform
import shlex
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import torch

from .outputs import atomic_write_text

RUN_METADATA_NAME = "run.json"
PACKAGES = ("synseg", "torch", "torchvision", "open_clip_torch", "numpy", "safetensors", "onnxruntime", "tensorboard")
GIT_TIMEOUT_S = 10
SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the checkout that holds synseg_core (when it is one)


def git_state(root: Path = SOURCE_ROOT) -> dict[str, Any] | None:
    """`{"commit": sha, "dirty": bool}` of the git checkout at `root` (tracked files only); None outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=GIT_TIMEOUT_S).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of `names` (None where a package is not installed), plus Python's."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def describe_device(device: torch.device | str) -> dict[str, Any]:
    """The device's type and name (the GPU model on CUDA, the processor on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {"type": "cuda", "index": index, "name": torch.cuda.get_device_name(index),
                "cuda": torch.version.cuda}
    return {"type": device.type, "name": platform.processor() or platform.machine()}


def run_metadata(device: torch.device | str, *, world_size: int = 1, seed: int | None = None,
                 argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Everything that says where a run or an evaluation came from (plain JSON values)."""
    argv = list(sys.argv if argv is None else argv)
    return {
        "command": shlex.join([Path(sys.executable).name, *argv]),
        "argv": argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "git": git_state(),
        "packages": package_versions(),
        "device": describe_device(device),
        "world_size": world_size,
        "seed": seed,
    }


def code_provenance(entry: dict[str, Any]) -> dict[str, Any]:
    """The part of a metadata entry a checkpoint carries: git state and package versions."""
    return {"git": entry.get("git"), "packages": entry.get("packages")}


def append_run_metadata(output_dir: str | Path, entry: dict[str, Any]) -> Path:
    """Add `entry` to `<output_dir>/run.json` (`{"starts": [...]}`, oldest first); written atomically."""
    path = Path(output_dir) / RUN_METADATA_NAME
    starts: list = []
    if path.is_file():
        try:
            starts = list(json.loads(path.read_text()).get("starts", []))
        except (ValueError, AttributeError):
            starts = []  # a damaged file is replaced rather than stopping the run
    return atomic_write_text(path, json.dumps({"starts": [*starts, entry]}, indent=1) + "\n")


def read_run_metadata(output_dir: str | Path) -> list[dict[str, Any]]:
    """The entries of a run folder's `run.json` ([] when there is none or it cannot be read)."""
    path = Path(output_dir) / RUN_METADATA_NAME
    try:
        return list(json.loads(path.read_text()).get("starts", []))
    except (OSError, ValueError, AttributeError):
        return []
