"""Settings of the TensorRT backend: cache place, precision, optimisation profile, build and check options."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from ....config import ConfigError, from_dict
from ...capabilities import backend_precisions

PRECISIONS = backend_precisions("tensorrt")
MAX_OPTIMIZATION_LEVEL = 5  # TensorRT's builder_optimization_level range is 0..5


@dataclass
class TensorRTConfig:
    """How engines are built, cached and checked.

    The optimisation profile always starts at 1 (one category, one image); `opt_*` is the shape TensorRT tunes
    for and `max_*` the largest shape the engine accepts. More categories than `max_categories` are run in
    chunks; more images than `max_batch` are refused (the backend's `max_batch` tells callers the limit).
    """

    cache_dir: str = "~/.cache/synseg/tensorrt"
    precision: Literal["fp32", "fp16"] = "fp16"  # requested; the resolved one is recorded per engine
    opt_categories: int = 10
    max_categories: int = 64
    opt_batch: int = 2  # sliding windows of one frame are batched (2-3 windows at 448 for 4:3 .. 16:9 frames)
    max_batch: int = 4
    workspace_mb: int | None = None  # None = TensorRT's default (the device's memory)
    optimization_level: int = 3  # builder_optimization_level; 3 is TensorRT's default
    tf32: bool = True  # allow TF32 for fp32 matmul/conv (TensorRT's default)
    timing_cache: bool = True  # persist the layer-timing cache in cache_dir/timing (faster rebuilds)
    force_rebuild: bool = False  # ignore cached engines and remembered failures, build afresh
    lock_timeout_s: float = 3600.0  # wait this long for another process building the same engine
    # A fresh engine must match the reference on random inputs: mean |p_trt - p_ref| catches systematic errors
    # (miscompiled fusions, fp16 overflow), max |.| catches local blow-ups. The max is taken over millions of
    # probabilities (B x K x S x S), and TF32 / fp16 matmuls round, hence the loose max bounds.
    verify_mean_abs_fp32: float = 1e-3
    verify_max_abs_fp32: float = 5e-2
    verify_mean_abs_fp16: float = 1e-2
    verify_max_abs_fp16: float = 2e-1
    verify_seed: int = 0  # seed of the random verification inputs
    show_progress: bool = True  # tqdm bars for the build phases (log lines are written regardless)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"tensorrt.precision {self.precision!r} is not one of {list(PRECISIONS)}")
        for opt_name, max_name in (("opt_categories", "max_categories"), ("opt_batch", "max_batch")):
            opt, top = getattr(self, opt_name), getattr(self, max_name)
            if not 1 <= opt <= top:
                raise ConfigError(f"tensorrt.{opt_name}={opt} and tensorrt.{max_name}={top} must satisfy "
                                  f"1 <= {opt_name} <= {max_name}")
        if not 0 <= self.optimization_level <= MAX_OPTIMIZATION_LEVEL:
            raise ConfigError(f"tensorrt.optimization_level={self.optimization_level} is outside "
                              f"0..{MAX_OPTIMIZATION_LEVEL}")
        if self.workspace_mb is not None and self.workspace_mb <= 0:
            raise ConfigError(f"tensorrt.workspace_mb={self.workspace_mb} must be a positive number of MiB or None")
        for name in ("lock_timeout_s", "verify_mean_abs_fp32", "verify_max_abs_fp32", "verify_mean_abs_fp16",
                     "verify_max_abs_fp16"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"tensorrt.{name}={getattr(self, name)} must be positive")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorRTConfig":
        """Build from a mapping; unknown keys and wrong types raise ConfigError listing the valid keys."""
        return from_dict(cls, data, "tensorrt")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def tolerances(self, precision: str) -> tuple[float, float]:
        """(mean, max) allowed |p_engine - p_reference| for an engine of `precision`."""
        if precision == "fp16":
            return self.verify_mean_abs_fp16, self.verify_max_abs_fp16
        return self.verify_mean_abs_fp32, self.verify_max_abs_fp32
