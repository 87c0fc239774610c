"""Build a serialized TensorRT engine from an ONNX file (the API shared by TensorRT 10.3 .. 11.x).

Flow as in NVIDIA's ONNX import workflow: Builder -> create_network(flags) -> OnnxParser.parse_from_file
(which also reads external weight files) -> builder config (profile, precision flags, workspace, timing cache,
progress monitor) -> build_serialized_network, which returns None on failure: the reason is only in the log.
API pages: https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Builder.html,
.../parsers/Onnx/pyOnnx.html, .../infer/Core/TimingCache.html.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

from ....outputs import atomic_write_bytes
from .callbacks import BuildProgress, CapturedLog, make_progress_monitor, make_trt_logger
from .config import TensorRTConfig
from .errors import EngineBuildError, OnnxParseError, TensorRTUnavailableError
from .precision import PrecisionPlan
from .profile import InputProfile

log = logging.getLogger(__name__)

_MIB = 1 << 20


@dataclass(frozen=True)
class BuilderOptions:
    """Builder settings that change the engine (all part of the cache key)."""

    workspace_bytes: int | None = None
    optimization_level: int = 3
    tf32: bool = True

    @classmethod
    def from_config(cls, config: TensorRTConfig) -> "BuilderOptions":
        workspace = None if config.workspace_mb is None else config.workspace_mb * _MIB
        return cls(workspace_bytes=workspace, optimization_level=config.optimization_level, tf32=config.tf32)

    def as_key(self) -> dict:
        return asdict(self)


def build_engine_bytes(trt: ModuleType, plan: PrecisionPlan, profile: tuple[InputProfile, ...],
                       options: BuilderOptions, captured: CapturedLog, *, timing_cache: Path | None = None,
                       progress: BuildProgress | None = None) -> bytes:
    """Parse `plan.onnx_path` and build a serialized engine.

    Raises:
        OnnxParseError: the parser rejected the model (every error, node by node, is in the message).
        EngineBuildError: the profile does not fit the network, or the builder returned no engine.
    """
    progress = progress or BuildProgress(show_bar=False)
    logger = make_trt_logger(trt, captured)
    try:
        builder = trt.Builder(logger)
    except (TypeError, RuntimeError) as exc:  # no CUDA: "factory function returned nullptr"
        raise TensorRTUnavailableError(f"TensorRT could not create a Builder ({exc}); is a CUDA device and "
                                       f"driver present? TensorRT said: {captured.summary()}") from exc
    network = builder.create_network(_network_flags(trt, plan))
    parser = trt.OnnxParser(network, logger)  # must stay referenced until the build ends: it owns the weights
    log.info("parsing %s for a %s TensorRT engine (%s)", plan.onnx_path, plan.resolved, plan.note)
    if not parser.parse_from_file(str(plan.onnx_path)):
        errors = [_describe_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise OnnxParseError(f"TensorRT's ONNX parser rejected {plan.onnx_path} with {len(errors)} error(s): "
                             + " | ".join(errors), errors)
    config = builder.create_builder_config()
    _apply_options(trt, config, plan, options)
    _add_profile(builder, network, config, profile)
    if timing_cache is not None and not _attach_timing_cache(config, timing_cache):
        timing_cache = None
    monitor = make_progress_monitor(trt, progress)  # referenced until the build ends, as TensorRT requires
    config.progress_monitor = monitor
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        progress.close()
    if serialized is None:
        raise EngineBuildError(f"TensorRT built no engine from {plan.onnx_path}: {captured.summary()}")
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    del parser, monitor
    return bytes(serialized)


def _network_flags(trt: ModuleType, plan: PrecisionPlan) -> int:
    # Flag values differ between 10.x and 11.x, so they are looked up by name, never hard-coded.
    flags = 0
    for name in plan.network_flags:
        member = getattr(trt.NetworkDefinitionCreationFlag, name, None)
        if member is None:
            raise EngineBuildError(f"this TensorRT ({trt.__version__}) has no NetworkDefinitionCreationFlag.{name}")
        flags |= 1 << int(member)
    return flags


def _apply_options(trt: ModuleType, config, plan: PrecisionPlan, options: BuilderOptions) -> None:
    for name in plan.builder_flags:
        member = getattr(trt.BuilderFlag, name, None)
        if member is None:
            raise EngineBuildError(f"this TensorRT ({trt.__version__}) has no BuilderFlag.{name}")
        config.set_flag(member)
    if not options.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if options.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    config.builder_optimization_level = options.optimization_level


def _add_profile(builder, network, config, profile: tuple[InputProfile, ...]) -> None:
    """Check the profile against the parsed network's inputs and add it to the config."""
    by_name = {item.name: item for item in profile}
    trt_profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        shape = tuple(tensor.shape)
        item = by_name.pop(tensor.name, None)
        if item is None:
            if any(dim < 0 for dim in shape):
                raise EngineBuildError(f"network input {tensor.name!r} has dynamic shape {shape} but the "
                                       "optimisation profile has no entry for it")
            continue
        fits = len(item.min) == len(shape) and all(
            dim < 0 or item.min[axis] == item.max[axis] == dim for axis, dim in enumerate(shape))
        if not fits:
            raise EngineBuildError(f"profile for {tensor.name!r} (min {item.min}, max {item.max}) does not fit "
                                   f"the network input shape {shape}")
        trt_profile.set_shape(tensor.name, item.min, item.opt, item.max)
    if by_name:
        raise EngineBuildError(f"profile names inputs {sorted(by_name)} that the network does not have")
    if config.add_optimization_profile(trt_profile) < 0:
        raise EngineBuildError("TensorRT rejected the optimisation profile "
                               f"{[item.as_key() for item in profile]}")


def _attach_timing_cache(config, path: Path) -> bool:
    """Load the persisted timing cache (one from another device or version is replaced by a new one).

    Returns False when TensorRT accepts no timing cache at all; the build then runs without one.
    """
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, False):
        log.info("TensorRT timing cache %s (%s)", path, f"{len(data)} bytes" if data else "new")
        return True
    if data:
        log.warning("timing cache %s does not match this TensorRT/GPU; starting a new one", path)
        cache = config.create_timing_cache(b"")
        if cache is not None and config.set_timing_cache(cache, False):
            return True
    log.warning("TensorRT refused a new timing cache; building without one")
    return False


def _describe_parser_error(error) -> str:
    return (f"node {error.node()} {error.node_name()!r} ({error.node_operator()}): "
            f"{getattr(error.code(), 'name', error.code())}: {error.desc()}")
