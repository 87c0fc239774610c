"""Distributed data parallel set-up for `torchrun`, and the few collectives the trainer needs.

Single process: `python training/train.py --config C.yaml`.
One node, N processes (GPUs, or CPU processes with gloo):
    torchrun --standalone --nproc_per_node N training/train.py --config C.yaml
Several nodes: run the same command on every node, with the same rendezvous endpoint (a host:port that every
node can reach, usually node 0), the same `--rdzv_id`, and `--nnodes` set to the node count:
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint node0.example:29400 \
        --rdzv_id synseg-run1 training/train.py --config C.yaml
torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; each process trains on its own GPU (cuda:LOCAL_RANK) and its own
shard of the data; rank 0 alone logs, evaluates and writes checkpoints, so `output_dir` only has to be writable
there (but `--resume` reads it on every rank, so use a shared file system for multi-node runs).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from ..config import ConfigError
from ..outputs import OutputError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_dist_info() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment (a single process when they are unset)."""
    return DistInfo(rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1)),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def resolve_device(requested: str, info: DistInfo = DistInfo(), setting: str = "runtime.device") -> torch.device:
    """"auto" = the local rank's GPU when CUDA is available, else the CPU; "cuda" = the local rank's GPU.

    `setting` names the option in error messages (the stage-1 CLIP trainer calls its own one "device")."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ConfigError(f"{setting}: {requested!r} is not a torch device ('auto', 'cpu', 'cuda', 'cuda:N')") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{setting}={requested!r} but CUDA is not available; use 'cpu' or 'auto'")
        if device.index is None:
            device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"{setting}: {requested!r} is not supported; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return device


def init_distributed(info: DistInfo, device: torch.device, backend: str, timeout_s: int) -> None:
    """Join the process group (no-op for one process); "auto" = nccl on CUDA, gloo on CPU."""
    if not info.distributed or dist.is_initialized():
        return
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError("runtime.distributed_backend=nccl needs CUDA devices; use gloo on CPU")
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s),
                            device_id=device if device.type == "cuda" else None)


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce ("sum", "min" or "max") when distributed; returns the tensor."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
    return tensor


def all_ranks_true(flag: bool, device: torch.device) -> bool:
    """True only when `flag` is True on every rank (so all ranks take the same branch)."""
    return bool(all_reduce(torch.tensor([int(flag)], device=device), "min").item())


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def on_main_rank(write: Callable[[], None], info: DistInfo, device: torch.device) -> None:
    """Run a file-writing action on rank 0; when it fails with an OutputError every rank raises one, so no rank
    waits forever in the next collective."""
    failure: OutputError | None = None
    if info.is_main:
        try:
            write()
        except OutputError as exc:
            failure = exc
    if not all_ranks_true(failure is None, device):
        raise failure or OutputError("rank 0 could not write its output (see its log); stopping")
