"""One caption sample, from a raw record to an augmented image with its categories (or a skip marker).

Every dataset format reads its records into a `CaptionRecord`; `SampleBuilder` does the rest the same way for
all of them: categories first (precomputed ones limited to K, else extracted from the caption), since that is
cheap and drops samples before their image is decoded; then the image, decoded and augmented with an RNG
seeded by (seed, epoch, key).
"""
from __future__ import annotations

import io
import logging
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import torch
from PIL import Image

from .categories import CategoryExtractor
from .skips import SkippedSample

log = logging.getLogger(__name__)

ImageSource = Union[bytes, Path, None]
ImageTransform = Callable[[Image.Image, random.Random], torch.Tensor]


@dataclass(frozen=True)
class CaptionRecord:
    """A raw sample as a dataset format stores it.

    Attributes:
        key: unique key (manifest line, annotation id, shard key).
        caption: the caption, None when the record has none.
        categories: precomputed categories, None when there are none.
        image: encoded image bytes, a file path, or None when the record names no image.
    """

    key: str
    caption: str | None
    categories: list[str] | None
    image: ImageSource


@dataclass
class CaptionSample:
    """A usable training sample.

    Attributes:
        image: float32 [3, S, S] after the transform (a PIL RGB image when the dataset has no transform).
        caption: the raw caption ("" when only precomputed categories exist).
        categories: 1..K category names.
        key: the record's key.
    """

    image: torch.Tensor | Image.Image
    caption: str
    categories: list[str]
    key: str


def load_image(source: bytes | Path) -> Image.Image:
    """Decode an image fully (so truncation errors surface here) and convert it to RGB.

    Raises:
        OSError / ValueError / SyntaxError: corrupt, truncated or unsupported image data.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # absurd sizes count as corrupt
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        image.load()
    return image.convert("RGB")


class SampleBuilder:
    """Turns a `CaptionRecord` into a `CaptionSample`, or a `SkippedSample` saying why it cannot be used.

    Args:
        extractor: category extraction and the K limit.
        transform: augmentation (``image, rng -> tensor``); None keeps the PIL image.
        seed: seeds per-sample randomness together with the epoch and the key.
    """

    def __init__(self, extractor: CategoryExtractor, transform: ImageTransform | None, seed: int = 0) -> None:
        self.extractor = extractor
        self.transform = transform
        self.seed = seed

    def __call__(self, record: CaptionRecord, epoch: int) -> CaptionSample | SkippedSample:
        """Build the sample of `record` for `epoch` (the epoch varies the crop and the random K selection)."""
        salt = f"{epoch}:{record.key}"
        if record.categories is not None:
            categories = self.extractor.select(record.categories, salt)
        elif record.caption is None or not record.caption.strip():
            return SkippedSample("no_caption", record.key)
        else:
            categories = self.extractor(record.caption, salt)
        if not categories:
            return SkippedSample("no_categories", record.key, record.caption or "")
        if record.image is None or (isinstance(record.image, Path) and not record.image.is_file()):
            return SkippedSample("missing_file", record.key, str(record.image or "no image in the record"))
        try:
            image = load_image(record.image)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            where = f"{record.image}: " if isinstance(record.image, Path) else ""
            log.debug("corrupt image %s: %s%s", record.key, where, exc)
            return SkippedSample("corrupt_image", record.key, f"{where}{exc}")
        rng = random.Random(f"{self.seed}:{salt}")
        pixels = self.transform(image, rng) if self.transform else image
        return CaptionSample(pixels, record.caption or "", categories, record.key)
