"""Inference: the `Segmenter` API, pre-processing (resize, sliding windows), post-processing and queries."""
from .postprocess import Outputs
from .preprocess import ImageError
from .segmenter import CategoryError, SegmentationResult, Segmenter

__all__ = ["CategoryError", "ImageError", "Outputs", "SegmentationResult", "Segmenter"]
