"""Zero-shot evaluation of a Segmenter on a labelled dataset (TCL unified protocol by default).

Class-id conventions: with a background class (``background_first``) the Segmenter gets ``classes[1:]`` and its
labels are the dataset's class ids directly (0 = below the background threshold). Without one, every pixel gets
its best category as ``argmax + 1``, so prediction k is class k - 1.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from synseg_core.model.backbone import list_template_sets
from synseg_core.config import InferenceConfig, replace_inference
from synseg_core.evaluation.datasets import SegmentationDataset, build_dataset
from synseg_core.evaluation.maskclip import MaskClipBackend
from synseg_core.evaluation.metrics import ConfusionMatrix, SegmentationMetrics
from synseg_core.evaluation.pamr import PAMRConfig, pamr_refine
from synseg_core.evaluation.provenance import checkpoint_provenance
from synseg_core.inference.postprocess import labels_from_probabilities
from synseg_core.inference.segmenter import Segmenter, resolve_model_source
from synseg_core.run_metadata import run_metadata

Method = Literal["synseg", "maskclip"]
METHODS: tuple[str, ...] = ("synseg", "maskclip")

# Inference settings of each protocol, applied over the checkpoint's own; "model" keeps the checkpoint's.
# TCL (khanrc/tcl configs/eval.yml, segmentation/configs/_base_/datasets/*.py): mmseg img_scale (2048, 448) with
# keep_ratio, slide crop 448 / stride 224, the "custom" template ensemble, bg_thresh 0.5 (0.4 with PAMR).
PROTOCOLS: dict[str, dict[str, Any]] = {
    "tcl": {"short_side": 448, "window": 448, "stride": 224, "templates": "tcl_custom", "background_threshold": 0.5},
    "model": {},
}
PAMR_BACKGROUND_THRESHOLD: dict[str, float] = {"tcl": 0.4}
OVERRIDABLE = ("short_side", "window", "stride", "templates", "background_threshold", "mask_threshold")


@dataclass(frozen=True)
class EvalSettings:
    """Everything that decides an evaluation run; all of it is written into the results.

    Attributes:
        dataset: dataset name (see ``synseg_core.evaluation.datasets.list_datasets``).
        data_root: dataset root folder.
        checkpoint: checkpoint folder/file, model-config file or bundled model-config name.
        protocol: a key of ``PROTOCOLS``.
        method: ``synseg`` (the model) or ``maskclip`` (training-free baseline on the same CLIP).
        pamr: refine probabilities with PAMR before labelling.
        pamr_config: PAMR iterations and dilations.
        limit: evaluate only the first N samples (None = all).
        num_visualize: samples shown in the qualitative grid (0 = none).
        classes_file: class-list file of a ``custom`` dataset.
        background_first: for ``custom``: the first class is background.
        overrides: inference settings over the protocol's (keys from ``OVERRIDABLE``; window None = whole image).
        device: torch device (``auto``: CUDA when present, else the CPU; see `resolve_device`).
        backend: image-path backend for ``synseg`` (``torch``, ``onnxruntime``, ...).
        precision: one of ``synseg_core.deploy.capabilities.PRECISIONS`` that the backend runs on the device.
    """

    dataset: str
    data_root: str
    checkpoint: str
    protocol: str = "tcl"
    method: Method = "synseg"
    pamr: bool = False
    pamr_config: PAMRConfig = field(default_factory=PAMRConfig)
    limit: int | None = None
    num_visualize: int = 8
    classes_file: str | None = None
    background_first: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    backend: str = "torch"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; valid protocols are {sorted(PROTOCOLS)}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid methods are {list(METHODS)}")
        unknown = sorted(set(self.overrides) - set(OVERRIDABLE))
        if unknown:
            raise ValueError(f"unknown inference overrides {unknown}; valid keys are {list(OVERRIDABLE)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be a positive number of images, got {self.limit}")
        if self.num_visualize < 0:
            raise ValueError(f"num_visualize must be >= 0, got {self.num_visualize}")
        templates = self.overrides.get("templates")
        if templates is not None and templates not in list_template_sets():
            raise ValueError(f"unknown template set {templates!r}; valid sets are {list_template_sets()}")


@dataclass
class QualitativeSample:
    """One row of the qualitative grid: image [H, W, 3] uint8, ground truth and prediction [H, W] class ids."""

    name: str
    image: np.ndarray
    ground_truth: np.ndarray
    prediction: np.ndarray


@dataclass
class EvaluationReport:
    """Outcome of one run.

    Attributes:
        settings: the run's settings.
        inference: the inference settings actually used.
        classes: class names in label order.
        background_first: class 0 is background.
        metrics: dataset-level scores.
        num_images: images evaluated.
        samples: the first ``num_visualize`` images with their labels.
        run: where the evaluation ran (command, git commit, package versions, device; `run_metadata`).
        provenance: where the checkpoint came from (`checkpoint_provenance`).
    """

    settings: EvalSettings
    inference: InferenceConfig
    classes: tuple[str, ...]
    background_first: bool
    metrics: SegmentationMetrics
    num_images: int
    samples: list[QualitativeSample]
    run: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def resolve_device(device: str) -> str:
    """``auto`` = ``cuda`` when a CUDA device is present, else ``cpu``; any other name as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_inference(base: InferenceConfig, settings: EvalSettings, background: bool, num_categories: int
                      ) -> InferenceConfig:
    """Inference settings of a run: the checkpoint's, then the protocol's, then the user's overrides.

    Args:
        base: the checkpoint's inference settings.
        background: the dataset has a background class (label pixels below the threshold as 0).
        num_categories: categories sent to the Segmenter (raises its category limit when needed).
    """
    values: dict[str, Any] = dict(PROTOCOLS[settings.protocol])
    if settings.pamr and settings.protocol in PAMR_BACKGROUND_THRESHOLD:
        values["background_threshold"] = PAMR_BACKGROUND_THRESHOLD[settings.protocol]
    values.update(settings.overrides)
    values["background"] = background
    values["max_categories"] = max(base.max_categories, num_categories)
    return replace_inference(base, **values)


def build_segmenter(settings: EvalSettings, background: bool, num_categories: int) -> Segmenter:
    """The Segmenter of a run: the model's own image path, or the MaskCLIP baseline on the model's CLIP."""
    if settings.method == "maskclip":
        model = resolve_model_source(settings.checkpoint)
        segmenter = Segmenter(model, MaskClipBackend(model, settings.device))
    else:
        segmenter = Segmenter.from_checkpoint(
            settings.checkpoint, device=settings.device, backend=settings.backend, precision=settings.precision
        )
    segmenter.inference = resolve_inference(segmenter.inference, settings, background, num_categories)
    return segmenter


def predict_classes(segmenter: Segmenter, image: np.ndarray, categories: list[str], background_first: bool,
                    pamr_config: PAMRConfig | None) -> np.ndarray:
    """Dataset class ids [H, W] for one uint8 RGB image [H, W, 3]."""
    probs = segmenter.segment_probabilities([image], categories)[0]  # [K, H, W]
    if pamr_config is not None:
        # PAMR's affinities are invariant to per-channel affine colour scaling, so raw pixel values will do.
        pixels = torch.from_numpy(image).to(probs.device).permute(2, 0, 1)[None].float()
        probs = pamr_refine(pixels, probs[None], pamr_config)[0]
    cfg = segmenter.inference
    labelled = labels_from_probabilities(probs, cfg.background_threshold if cfg.background else None,
                                         cfg.mask_threshold)
    labels = labelled.labels.cpu().numpy().astype(np.int64)
    return labels if background_first else labels - 1


def evaluate_dataset(segmenter: Segmenter, dataset: SegmentationDataset, *, pamr_config: PAMRConfig | None = None,
                     limit: int | None = None, num_visualize: int = 0, progress: bool = True
                     ) -> tuple[ConfusionMatrix, list[QualitativeSample]]:
    """Score a Segmenter on a dataset, showing a progress bar with the running mIoU.

    Returns:
        the accumulated confusion matrix and the first ``num_visualize`` samples with their predictions.
    """
    categories = [c.strip() for c in (dataset.classes[1:] if dataset.background_first else dataset.classes)]
    confusion = ConfusionMatrix(len(dataset.classes), dataset.ignore_index)
    samples: list[QualitativeSample] = []
    count = len(dataset) if limit is None else min(limit, len(dataset))
    bar = tqdm(range(count), desc=f"eval {dataset.key}", unit="img", disable=not progress)
    for index in bar:
        sample = dataset[index]
        pred = predict_classes(segmenter, sample.image, categories, dataset.background_first, pamr_config)
        try:
            confusion.update(pred, sample.label)
        except ValueError as exc:
            raise ValueError(f"sample {sample.name!r} of dataset {dataset.key!r}: {exc}") from exc
        if len(samples) < num_visualize:
            samples.append(QualitativeSample(sample.name, sample.image, sample.label, pred))
        bar.set_postfix(mIoU=f"{100 * confusion.compute().miou:.2f}")
    return confusion, samples


def run_evaluation(settings: EvalSettings, progress: bool = True, argv: Sequence[str] | None = None
                   ) -> EvaluationReport:
    """Build the dataset and the Segmenter from the settings, evaluate, and return the report (with the run's
    metadata, `argv` as its command line, and the checkpoint's provenance)."""
    dataset = build_dataset(settings.dataset, settings.data_root, classes_file=settings.classes_file,
                            background_first=settings.background_first)
    num_categories = len(dataset.classes) - int(dataset.background_first)
    if num_categories < 1:
        raise ValueError(f"dataset {settings.dataset!r} has no class besides background to segment")
    segmenter = build_segmenter(settings, dataset.background_first, num_categories)
    confusion, samples = evaluate_dataset(
        segmenter, dataset, pamr_config=settings.pamr_config if settings.pamr else None, limit=settings.limit,
        num_visualize=settings.num_visualize, progress=progress,
    )
    return EvaluationReport(
        settings=settings, inference=dataclasses.replace(segmenter.inference), classes=dataset.classes,
        background_first=dataset.background_first, metrics=confusion.compute(),
        num_images=min(len(dataset), settings.limit or len(dataset)), samples=samples,
        run=run_metadata(settings.device, argv=argv), provenance=checkpoint_provenance(settings.checkpoint),
    )
