"""`Segmenter`: the one-call API for Python users, evaluation and the ROS node."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, overload

import numpy as np
import torch

from ..deploy.backends.base import BackendError, ImagePathBackend
from ..model.checkpoint import load_checkpoint, read_checkpoint_config
from ..model.hub import resolve_pretrained
from ..model.registry import list_pretrained
from ..config import ConfigError, InferenceConfig, SynSegConfig, get_model_config, list_models, load_config_file
from .image_path import GroupMaps, batch_outputs, window_maps
from .workspace import Workspace
from .preprocess import validate_image
from ..model.synseg import SynSeg
from .postprocess import Outputs, upsample

log = logging.getLogger(__name__)

MAX_CATEGORY_LENGTH = 200


class CategoryError(ValueError):
    """A category list is empty, too long, or holds something other than non-empty strings."""


@dataclass
class SegmentationResult:
    """Per-image output, all at the input image's resolution H x W; a result not asked for (see `Outputs`) is None."""

    categories: list[str]
    probabilities: np.ndarray | None  # [K, H, W] float32
    masks: np.ndarray | None  # [K, H, W] bool, probability > mask_threshold (overlaps allowed)
    labels: np.ndarray | None  # [H, W] int32 (compact: uint8/uint16): 0 = background, k = categories[k - 1]
    confidence: np.ndarray | None  # [H, W] float32: probability of the winning category
    mask_images: np.ndarray | None = None  # [K, H, W] uint8, 255 inside, each plane contiguous (a mono8 image)


def validate_categories(categories: object, max_categories: int) -> list[str]:
    """A non-empty list of at most `max_categories` non-empty strings (each at most MAX_CATEGORY_LENGTH long)."""
    if isinstance(categories, str) or not isinstance(categories, Sequence):
        raise CategoryError(f"categories must be a list of strings, got {type(categories).__name__}")
    if len(categories) == 0:
        raise CategoryError("categories is empty; give at least one category name")
    if len(categories) > max_categories:
        raise CategoryError(f"{len(categories)} categories given; at most {max_categories} are allowed")
    for i, c in enumerate(categories):
        if not isinstance(c, str):
            raise CategoryError(f"categories[{i}] must be a string, got {type(c).__name__} {c!r}")
        if not c.strip():
            raise CategoryError(f"categories[{i}] is empty or whitespace")
        if len(c) > MAX_CATEGORY_LENGTH:
            raise CategoryError(f"categories[{i}] is {len(c)} characters long; at most {MAX_CATEGORY_LENGTH}")
    return [c.strip() for c in categories]


# Checkpoints shipped inside the package, by name: "demo" is the synthetic-data demo model (docs/proof_of_learning.md).
BUNDLED_CHECKPOINTS = {"demo": Path(__file__).resolve().parent.parent / "resources" / "demo" / "model"}


def bundled_checkpoint_config(name: str) -> SynSegConfig:
    """The model config of a bundled checkpoint (read from its config.json; no weights are loaded)."""
    if name not in BUNDLED_CHECKPOINTS:
        raise ConfigError(f"unknown bundled checkpoint {name!r}; bundled: {sorted(BUNDLED_CHECKPOINTS)}")
    return read_checkpoint_config(BUNDLED_CHECKPOINTS[name])[0]


def resolve_model_source(source: str | Path | SynSegConfig, verify: bool = True) -> SynSeg:
    """A model from a checkpoint folder/file, a model-config JSON file, a bundled checkpoint name ("demo"), a
    pretrained model name (e.g. "clipseg-rd64-refined": converted on first use, see synseg_core.model.hub), a bundled
    config name (random weights, e.g. "tiny-test") or a SynSegConfig. verify=False skips the weight-file SHA-256."""
    if isinstance(source, SynSegConfig):
        return SynSeg(source)
    if str(source) in BUNDLED_CHECKPOINTS:
        return load_checkpoint(BUNDLED_CHECKPOINTS[str(source)], verify=verify)
    if str(source) in list_pretrained():
        return load_checkpoint(resolve_pretrained(str(source)), verify=verify)
    path = Path(source)
    if path.is_dir() or path.suffix == ".safetensors":
        return load_checkpoint(path, verify=verify)
    if path.suffix == ".json" and path.is_file():
        return SynSeg(load_config_file(path))
    if str(source) in list_models():
        return SynSeg(get_model_config(str(source)))
    raise ConfigError(f"{source!r} is neither a checkpoint folder, a .safetensors file, a model-config .json file, a "
                      f"bundled checkpoint ({sorted(BUNDLED_CHECKPOINTS)}), a pretrained model ({list_pretrained()}) "
                      f"nor a bundled model config ({list_models()})")


class Segmenter:
    """Open-vocabulary segmentation of RGB images for a list of category names.

    Text embeddings are cached per category string; the image path runs on a pluggable backend, with pre- and
    post-processing on the backend's device (synseg_core/inference/image_path.py).
    Thread-safe: calls from several threads run the backend at once when it is `thread_safe` (torch, ONNX Runtime),
    else one at a time (TensorRT); their pre- and post-processing always overlap. Each calling thread keeps its
    intermediates (about K + 5 maps of the largest input size) for its next call.
    """

    def __init__(self, model: SynSeg, backend: ImagePathBackend, inference: InferenceConfig | None = None):
        self.model = model
        self.backend = backend
        self.inference = inference or dataclasses.replace(model.cfg.inference)
        self._lock = threading.Lock()
        self._workspace = Workspace()
        self._device_text: tuple[tuple, torch.Tensor] | None = None  # (query, embeddings on the backend's device)

    @classmethod
    def from_checkpoint(cls, source: str | Path | SynSegConfig, *, device: str = "cpu", backend: str = "torch",
                        precision: str = "fp32", inference: InferenceConfig | None = None, verify: bool = True,
                        **backend_options) -> "Segmenter":
        """Build from a checkpoint, a config file, a bundled config name (e.g. "tiny-test") or a SynSegConfig.

        Args:
            backend: "torch", "onnxruntime", "tensorrt" or "auto" (TensorRT, then ONNX Runtime, then torch).
            verify: check the checkpoint's weight file against its recorded SHA-256 (False: skip, for huge files).
            backend_options: passed to the backend factory (e.g. onnx_path, cache_dir, max_batch).
        """
        model = resolve_model_source(source, verify)
        from ..deploy.backends.factory import create_backend  # lazy: optional runtimes import on demand

        image_backend = create_backend(backend, model, device=device, precision=precision, **backend_options)
        log.info("Segmenter ready: model %s, backend %s (%s, %s)", model.cfg.name, image_backend.name,
                 image_backend.precision, image_backend.device)
        return cls(model, image_backend, inference)

    @property
    def device(self) -> torch.device:
        return self.backend.device

    def encode_text(self, categories: Sequence[str]) -> torch.Tensor:
        """Embeddings [K, D] for the categories (cached per string, computed in PyTorch)."""
        cats = validate_categories(categories, self.inference.max_categories)
        text_device = next(self.model.backbone.parameters()).device
        with torch.inference_mode():
            return self.model.text_embeddings(cats, self.inference.templates).to(text_device)

    def _window_maps(self, images: Sequence[np.ndarray], categories: Sequence[str]) -> list[GroupMaps]:
        """Probabilities at the model's resolution per group of same-size images (all windows share batches)."""
        images = [validate_image(im, i) for i, im in enumerate(images)]
        if not images:
            raise ValueError("no images given")
        text = self._text_on_device(categories)
        cfg = self.inference
        fixed = self.backend.input_size
        if fixed is not None and (cfg.window or cfg.short_side) != fixed:
            raise BackendError(f"backend {self.backend.name} runs {fixed}x{fixed} inputs only, but inference asks for "
                               f"{cfg.window or cfg.short_side}; set window (or short_side with window=None) to {fixed}")
        lock = contextlib.nullcontext() if self.backend.thread_safe else self._lock

        def run(windows: torch.Tensor) -> torch.Tensor:
            with lock:  # only the backend call: pre- and post-processing of other calls go on meanwhile
                return self.backend.run(windows, text)

        return window_maps(images, run, self.model.cfg.preprocess, cfg, self.model.backbone.patch_size, self.device,
                           self.backend.max_batch, self._workspace)

    def _text_on_device(self, categories: Sequence[str]) -> torch.Tensor:
        """The query's embeddings where the backend runs, copied there once per query (ONNX Runtime and TensorRT
        keep the text tower on the CPU; a copy from pageable memory each frame would wait for the GPU). A frame of
        the same query does no text work at all."""
        key = (tuple(categories), self.inference.templates, self.inference.max_categories)
        cached = self._device_text
        if cached is None or cached[0] != key:
            cached = self._device_text = (key, self.encode_text(categories).to(self.device))
        return cached[1]

    def segment_probabilities(self, images: Sequence[np.ndarray], categories: Sequence[str]) -> list[torch.Tensor]:
        """Per-image probabilities [K, H_i, W_i] at each input's resolution, on the backend's device."""
        out: list[torch.Tensor] = [None] * len(images)  # type: ignore[list-item]
        with torch.inference_mode():
            for group in self._window_maps(images, categories):
                probs = upsample(group.maps, group.size)
                probs = (probs.clone() if probs is group.maps else probs).clamp_(0, 1)  # never a workspace tensor
                for row, i in enumerate(group.members):
                    out[i] = probs[row]
        return out

    @overload
    def segment(self, image: np.ndarray, categories: Sequence[str], *, probabilities: bool = True,
                outputs: Outputs | None = None) -> SegmentationResult: ...

    @overload
    def segment(self, image: Sequence[np.ndarray], categories: Sequence[str], *, probabilities: bool = True,
                outputs: Outputs | None = None) -> list[SegmentationResult]: ...

    def segment(self, image, categories, *, probabilities=True, outputs=None):
        """Segment one HxWx3 uint8 RGB image, or a batch (a list, or a BxHxWx3 array), for the given categories.

        Pre- and post-processing run on the backend's device; only the results in `outputs` (default: labels, masks,
        confidence, probabilities) are computed and copied to host memory, a batch's all at once.
        probabilities=False drops the probabilities from `outputs`: on a GPU that saves copying the [K, H, W]
        float maps to host memory (12 MB per 640x480 frame at K=10).
        """
        single = isinstance(image, np.ndarray) and image.ndim != 4
        if single:
            images = [image]
        elif isinstance(image, (list, tuple)) or (isinstance(image, np.ndarray) and image.ndim == 4):
            images = list(image)
        else:
            raise ValueError(f"image must be an HxWx3 uint8 RGB array or a batch of them, got {type(image).__name__}")
        cats = validate_categories(categories, self.inference.max_categories)
        wanted = outputs or Outputs()
        if not probabilities:
            wanted = dataclasses.replace(wanted, probabilities=False)
        cfg = self.inference
        with torch.inference_mode():
            groups = self._window_maps(images, cats)
            arrays = batch_outputs(groups, cfg.background_threshold if cfg.background else None, cfg.mask_threshold,
                                   wanted, self._workspace)
        empty = dict.fromkeys(("probabilities", "masks", "labels", "confidence", "mask_images"))
        results = [SegmentationResult(categories=list(cats), **{**empty, **found}) for found in arrays]
        return results[0] if single else results
