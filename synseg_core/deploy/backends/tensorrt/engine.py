"""Get a trusted engine for one request: from the cache, or built under a file lock, loaded and verified.

Stale or corrupt cached engines (sidecar mismatch, checksum mismatch, deserialize_cuda_engine returning None)
are removed and rebuilt. A failed parse, build, load or verification is remembered under the engine's key (the
negative cache) so the next start does not repeat it; an engine that fails verification is quarantined.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

import filelock
import torch

from .builder import BuilderOptions, build_engine_bytes
from .cache import EngineCache, EnginePaths, describe_failure, engine_key
from .callbacks import BuildProgress, CapturedLog
from .errors import (CachedFailureError, EngineLoadError, EngineVerificationError, OnnxParseError, TensorRTError,
                     TensorRTUnavailableError)
from .precision import PrecisionPlan
from .probe import DeviceInfo, TensorRTInfo
from .profile import InputProfile
from .runner import TrtRunner

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 20  # TensorRT log lines kept in the sidecar


@dataclass(frozen=True)
class EngineRequest:
    """Everything that determines one engine; `ingredients()` is what the cache key is computed from."""

    plan: PrecisionPlan
    profile: tuple[InputProfile, ...]
    options: BuilderOptions
    tensorrt: TensorRTInfo
    gpu: DeviceInfo
    onnx_fingerprint: dict

    def ingredients(self) -> dict:
        return {"onnx": self.onnx_fingerprint,
                "tensorrt": {"version": self.tensorrt.version, "distribution": self.tensorrt.distribution},
                "gpu": {"name": self.gpu.name, "compute_capability": self.gpu.compute_capability,
                        "l4t_release": self.gpu.l4t_release},
                "precision": self.plan.as_key(),
                "profile": [item.as_key() for item in self.profile],
                "builder": self.options.as_key()}


@dataclass
class LoadedEngine:
    runner: TrtRunner
    sidecar: dict
    fresh: bool  # built (and verified) by this call


@dataclass(frozen=True)
class ObtainOptions:
    force_rebuild: bool = False
    lock_timeout_s: float = 3600.0
    timing_cache: bool = True
    show_progress: bool = True


def obtain_engine(trt: ModuleType, request: EngineRequest, cache: EngineCache, device: torch.device,
                  verifier: Callable[[TrtRunner], dict], options: ObtainOptions = ObtainOptions()) -> LoadedEngine:
    """A cached engine for `request`, or a freshly built one that passed `verifier`.

    Args:
        verifier: checks a fresh engine and returns its report; raises EngineVerificationError when it fails.

    Raises:
        CachedFailureError: this request failed before (and force_rebuild is off).
        OnnxParseError, EngineBuildError, EngineLoadError, EngineVerificationError: this attempt failed.
        TensorRTError: the lock could not be taken in time.
    """
    # TensorRT builds for and loads onto the current CUDA device.
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        return _obtain(trt, request, cache, device, verifier, options)


def _obtain(trt: ModuleType, request: EngineRequest, cache: EngineCache, device: torch.device,
            verifier: Callable[[TrtRunner], dict], options: ObtainOptions) -> LoadedEngine:
    ingredients = request.ingredients()
    paths = cache.paths(request.plan.onnx_path.stem, engine_key(ingredients))
    if not options.force_rebuild:
        loaded = _from_cache(trt, cache, paths, ingredients, device, locked=False)
        if loaded is not None:
            return loaded
    cache.check_writable()
    lock = cache.lock(paths, options.lock_timeout_s)
    try:
        with lock:
            if options.force_rebuild:
                cache.clear_failure(paths)
                cache.discard(paths)
            else:  # another process may have built it while we waited for the lock
                loaded = _from_cache(trt, cache, paths, ingredients, device, locked=True)
                if loaded is not None:
                    return loaded
            return _build(trt, request, cache, paths, device, verifier, options)
    except filelock.Timeout as exc:
        raise TensorRTError(f"waited {options.lock_timeout_s:.0f} s for {paths.lock}, held by another process "
                            "building the same engine; raise tensorrt.lock_timeout_s or stop that process") from exc


def _from_cache(trt: ModuleType, cache: EngineCache, paths: EnginePaths, ingredients: dict,
                device: torch.device, locked: bool) -> LoadedEngine | None:
    """The cached engine, or None; stale ones are removed only while holding the lock."""
    failure = cache.read_failure(paths)
    if failure is not None:
        raise CachedFailureError(describe_failure(failure, paths))
    cached = cache.load_plan(paths, ingredients, discard_stale=locked)
    if cached is None:
        return None
    plan, sidecar = cached
    try:
        runner = TrtRunner(trt, plan, device)
    except EngineLoadError as exc:
        if locked:
            log.warning("cached engine %s is stale: %s; it will be rebuilt", paths.plan, exc)
            cache.discard(paths)
        return None
    log.info("loaded cached TensorRT engine %s (%s)", paths.plan, sidecar["ingredients"]["precision"]["resolved"])
    return LoadedEngine(runner, sidecar, fresh=False)


def _build(trt: ModuleType, request: EngineRequest, cache: EngineCache, paths: EnginePaths, device: torch.device,
           verifier: Callable[[TrtRunner], dict], options: ObtainOptions) -> LoadedEngine:
    ingredients = request.ingredients()
    captured = CapturedLog()
    timing = cache.timing_cache_path(request.tensorrt.version, request.gpu) if options.timing_cache else None
    started = time.monotonic()
    stage = "build"
    try:
        plan = build_engine_bytes(trt, request.plan, request.profile, request.options, captured,
                                  timing_cache=timing, progress=BuildProgress(show_bar=options.show_progress))
        seconds = time.monotonic() - started
        stage = "load"
        runner = TrtRunner(trt, plan, device, captured)
        stage = "verify"
        report = verifier(runner)
    except TensorRTUnavailableError:
        raise  # about this machine, not this engine: nothing to remember
    except EngineVerificationError as exc:
        log.error("TensorRT engine %s failed verification and is quarantined in %s: %s", paths.key[:16],
                  paths.quarantined_plan.parent, exc)
        cache.quarantine(paths, plan, {"error": str(exc), "verification": exc.report})
        cache.record_failure(paths, ingredients, stage, exc, captured.lines())
        raise
    except TensorRTError as exc:
        cache.record_failure(paths, ingredients, "parse" if isinstance(exc, OnnxParseError) else stage, exc,
                             captured.lines())
        raise
    log.info("built TensorRT %s engine in %.1f s: %s", request.plan.resolved, seconds, paths.plan)
    sidecar = cache.store(paths, plan, ingredients, {
        "precision_note": request.plan.note, "build_seconds": round(seconds, 1), "verification": report,
        "io": {name: {"input": spec.is_input, "dtype": str(spec.dtype).removeprefix("torch."),
                      "shape": list(spec.shape), "profile": spec.profile and [list(s) for s in spec.profile]}
               for name, spec in runner.specs.items()},
        "tensorrt_log_tail": captured.lines()[-LOG_TAIL_LINES:]})
    return LoadedEngine(runner, sidecar, fresh=True)
