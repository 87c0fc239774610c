"""The TensorRT image-path backend and its precision fallback (fp16 engine -> fp32 engine -> caller's fallback)."""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Callable

import torch

from ..base import BackendError, ImagePathBackend
from .builder import BuilderOptions
from .cache import EngineCache, engine_key
from .config import TensorRTConfig
from .engine import EngineRequest, ObtainOptions, obtain_engine
from .errors import EngineLoadError, TensorRTError, TensorRTUnavailableError
from .onnx_info import fingerprint_onnx, graph_inputs, load_onnx_structure, require_onnx_file
from .precision import PrecisionPlan, resolve_precision
from .probe import DeviceInfo, TensorRTInfo, import_tensorrt, probe_device_info, tensorrt_info
from .profile import IMAGES_INPUT, PROBABILITIES_OUTPUT, TEXT_INPUT, axis_ranges, resolve_profile
from .runner import TrtRunner
from .verify import check_points, verify_engine

log = logging.getLogger(__name__)

ReferenceFactory = Callable[[], ImagePathBackend]


class TensorRTBackend:
    """ImagePathBackend on a TensorRT engine.

    Attributes:
        precision: the engine's resolved precision ("fp16" only when it really was built fp16).
        input_size: the engine's fixed image size S.
        max_batch: largest image batch per `run` (the profile's max).
        max_categories: largest category count per engine call; `run` splits larger K into chunks, which is
            exact because every category's map is decoded independently of the others.
        sidecar: the engine's cache record (key ingredients, verification report, build log tail).
    """

    name = "tensorrt"
    thread_safe = False  # one execution context and its bound buffers

    def __init__(self, runner: TrtRunner, precision: str, sidecar: dict | None = None):
        expected = {IMAGES_INPUT, TEXT_INPUT, PROBABILITIES_OUTPUT}
        if not expected <= set(runner.specs):
            raise EngineLoadError(f"engine tensors are {sorted(runner.specs)}; the image path needs {sorted(expected)}")
        images, text = runner.specs[IMAGES_INPUT], runner.specs[TEXT_INPUT]
        if len(images.shape) != 4 or images.shape[-1] < 0 or len(text.shape) != 2 or text.shape[-1] < 0:
            raise EngineLoadError(f"engine input shapes {images.shape} / {text.shape} are not [B, 3, S, S] / [K, D] "
                                  "with fixed S and D")
        self.runner = runner
        self.precision = precision
        self.device = runner.device
        self.input_size = images.shape[-1]
        self.embed_dim = text.shape[-1]
        self.batch_range = tuple(shape[0] for shape in images.profile)
        self.category_range = tuple(shape[0] for shape in text.profile)
        self.max_batch = self.batch_range[-1]
        self.max_categories = self.category_range[-1]
        self.sidecar = sidecar or {}

    def run(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] float32 normalised, text [K, D] float32 -> probabilities [B, K, S, S] float32."""
        size = self.input_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size) or images.shape[0] < 1:
            raise BackendError(f"images have shape {tuple(images.shape)}; this TensorRT engine takes [B, 3, {size}, "
                               f"{size}] with 1 <= B <= {self.max_batch} (export another ONNX for another size)")
        if images.shape[0] > self.max_batch:
            raise BackendError(f"{images.shape[0]} images in one call; this engine takes at most {self.max_batch} "
                               "(tensorrt.max_batch)")
        if text.ndim != 2 or text.shape[1] != self.embed_dim or text.shape[0] < 1:
            raise BackendError(f"text embeddings have shape {tuple(text.shape)}; expected [K, {self.embed_dim}] "
                               "with K >= 1")
        # Device tensors in, device tensors out: the runner binds the inputs' memory and returns its output buffer.
        chunks = [self.runner({IMAGES_INPUT: images, TEXT_INPUT: part})[PROBABILITIES_OUTPUT]
                  for part in text.split(self.max_categories)]
        return (chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=1)).float()


def create_tensorrt_backend(onnx_path: str | Path, reference: ReferenceFactory, config: TensorRTConfig, *,
                            fp16_onnx_path: str | Path | None = None, device: str | torch.device = "cuda",
                            device_info: DeviceInfo | None = None) -> TensorRTBackend:
    """A TensorRT backend for an exported ONNX, falling back from an fp16 to an fp32 engine.

    Args:
        onnx_path: the fp32 export ([B,3,S,S] images + [K,D] text_embeddings -> probabilities).
        reference: makes the trusted backend fresh engines are verified against (called at most once, and only
            when an engine is built).
        config: cache, precision, profile and verification settings.
        fp16_onnx_path: the fp16 export, needed for fp16 engines on TensorRT 11+.
        device: the CUDA device to build for and run on.
        device_info: GPU description for the cache key (probed from `device` when None).

    Raises:
        TensorRTUnavailableError: TensorRT cannot run here at all.
        TensorRTError: no engine of any precision is usable; the message lists each attempt's reason, and the
            caller falls back to ONNX Runtime or PyTorch.
    """
    for path in (onnx_path, fp16_onnx_path):  # bad input is reported before the machine is examined
        if path is not None:
            require_onnx_file(path)
    trt = import_tensorrt()
    info = tensorrt_info(trt)
    device = torch.device(device)
    gpu = device_info or probe_device_info(device)
    cache = EngineCache(config.cache_dir)
    get_reference = functools.cache(reference)
    fingerprint = functools.cache(fingerprint_onnx)  # hashing a ViT-B export takes a while: once per file
    tried: set[str] = set()
    reasons: list[str] = []
    for requested in ("fp16", "fp32") if config.precision == "fp16" else ("fp32",):
        request = engine_request(requested, onnx_path, config, info, gpu, fp16_onnx_path=fp16_onnx_path,
                                 fingerprint=fingerprint)
        plan = request.plan
        key = engine_key(request.ingredients())
        if key in tried:  # e.g. fp16 resolved to fp32 on TensorRT 11 without an fp16 ONNX
            continue
        tried.add(key)
        verifier = functools.partial(_verify, plan=plan, reference=get_reference, config=config)
        options = ObtainOptions(force_rebuild=config.force_rebuild, lock_timeout_s=config.lock_timeout_s,
                                timing_cache=config.timing_cache, show_progress=config.show_progress)
        try:
            loaded = obtain_engine(trt, request, cache, device, verifier, options)
        except TensorRTUnavailableError:
            raise
        except TensorRTError as exc:
            reasons.append(f"{plan.resolved} engine: {exc}")
            log.warning("TensorRT %s engine is not usable: %s", plan.resolved, exc)
            continue
        if reasons:
            log.warning("using the TensorRT %s engine because %s", plan.resolved, "; ".join(reasons))
        return TensorRTBackend(loaded.runner, plan.resolved, loaded.sidecar)
    raise TensorRTError("no usable TensorRT engine (" + " | ".join(reasons) + ")")


def engine_request(requested: str, onnx_path: str | Path, config: TensorRTConfig, tensorrt: TensorRTInfo,
                   gpu: DeviceInfo, *, fp16_onnx_path: str | Path | None = None,
                   fingerprint: Callable[[Path], dict] = fingerprint_onnx) -> EngineRequest:
    """Everything that determines the engine for one requested precision (its cache key ingredients)."""
    plan = resolve_precision(requested, tensorrt.major, onnx_path, fp16_onnx_path)
    profile = resolve_profile(graph_inputs(load_onnx_structure(plan.onnx_path)), axis_ranges(config))
    return EngineRequest(plan, profile, BuilderOptions.from_config(config), tensorrt, gpu,
                         fingerprint(plan.onnx_path))


def _verify(runner: TrtRunner, *, plan: PrecisionPlan, reference: ReferenceFactory, config: TensorRTConfig) -> dict:
    backend = TensorRTBackend(runner, plan.resolved)
    mean_abs, max_abs = config.tolerances(plan.resolved)
    return verify_engine(backend.run, reference(), check_points(backend.batch_range, backend.category_range),
                         input_size=backend.input_size, embed_dim=backend.embed_dim, mean_abs=mean_abs,
                         max_abs=max_abs, seed=config.verify_seed)


def tensorrt_backend_factory(onnx_path: str | Path, reference: ReferenceFactory, config: TensorRTConfig, *,
                             fp16_onnx_path: str | Path | None = None) -> Callable[[str], TensorRTBackend]:
    """A `device -> backend` factory for `select_backend`."""
    def factory(device: str) -> TensorRTBackend:
        return create_tensorrt_backend(onnx_path, reference, config, fp16_onnx_path=fp16_onnx_path, device=device)
    return factory
