"""Caption-data configuration and the factory that builds a dataset from it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence, get_args

from ..config import ConfigError
from .augment import AugmentConfig, TrainTransform
from .captions import CocoCaptionDataset, JsonlCaptionDataset
from .categories import CategoryConfig, CategoryExtractor
from .samples import SampleBuilder
from .shards import WebCaptionDataset

DataFormat = Literal["webdataset", "jsonl", "coco"]
CaptionDataset = JsonlCaptionDataset | CocoCaptionDataset | WebCaptionDataset


@dataclass
class CaptionDataConfig:
    """Where the image-caption pairs are and how they become training samples.

    Attributes:
        format: "webdataset" (img2dataset tar shards), "jsonl" (manifest) or "coco" (COCO-captions JSON).
        path: shard pattern/folder/URLs, manifest path, or captions JSON.
        image_root: folder of the COCO images (coco only).
        categories_dir: per-shard category sidecars from extract_categories.py (webdataset only).
        shuffle: shuffle samples (map-style: the sampler; webdataset: shard order).
        shuffle_buffer: webdataset per-worker sample shuffle buffer (0 = off).
        repeat: webdataset: stream epoch after epoch without end (the trainer counts steps).
        probe_files: map-style: check the first N image paths exist before training (0 = off).
        seed: seed of shuffling, crops and random category selection.
        categories: category extraction (K, modifiers, backend).
        augment: crop/flip settings.
    """

    format: DataFormat = "jsonl"
    path: str = ""
    image_root: str | None = None
    categories_dir: str | None = None
    shuffle: bool = True
    shuffle_buffer: int = 1000
    repeat: bool = True
    probe_files: int = 16
    seed: int = 0
    categories: CategoryConfig = field(default_factory=CategoryConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.format not in get_args(DataFormat):
            raise ConfigError(f"data.format: {self.format!r} is not one of {list(get_args(DataFormat))}")
        if not self.path:
            raise ConfigError("data.path is required: the shard pattern, manifest or COCO captions file")
        if (self.format == "coco") != (self.image_root is not None):
            raise ConfigError(f"data.image_root is needed for format 'coco' and only for it (format "
                              f"{self.format!r}, image_root {self.image_root!r})")
        if self.categories_dir is not None and self.format != "webdataset":
            raise ConfigError(f"data.categories_dir is for webdataset sidecars; for format {self.format!r} "
                              "write the categories into the manifest with training/extract_categories.py")
        if self.shuffle_buffer < 0 or self.probe_files < 0:
            raise ConfigError(f"data.shuffle_buffer and data.probe_files must be >= 0, got "
                              f"{self.shuffle_buffer} and {self.probe_files}")


def build_caption_dataset(config: CaptionDataConfig, mean: Sequence[float], std: Sequence[float]) -> CaptionDataset:
    """The dataset `config` describes, with the augmentation normalised by the model's `mean` / `std`.

    Raises:
        FileNotFoundError / ValueError: a missing or empty dataset (before any training step).
    """
    builder = SampleBuilder(CategoryExtractor(config.categories), TrainTransform(config.augment, mean, std),
                            seed=config.seed)
    if config.format == "jsonl":
        return JsonlCaptionDataset(config.path, builder, probe_files=config.probe_files)
    if config.format == "coco":
        return CocoCaptionDataset(config.path, config.image_root, builder, probe_files=config.probe_files)
    return WebCaptionDataset(config.path, builder, categories_dir=config.categories_dir,
                             shuffle_shards=config.shuffle, shuffle_buffer=config.shuffle_buffer,
                             seed=config.seed, repeat=config.repeat)
