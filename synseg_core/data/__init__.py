"""Caption data for training: datasets of image-caption pairs, category extraction, augmentation, batching."""
from .augment import AugmentConfig, TrainTransform
from .build import CaptionDataConfig, build_caption_dataset
from .captions import CocoCaptionDataset, JsonlCaptionDataset
from .categories import CategoryConfig, CategoryExtractor
from .collate import CaptionBatch, CaptionCollator
from .loader import CaptionLoader
from .sampler import ResumableDistributedSampler
from .samples import CaptionRecord, CaptionSample, SampleBuilder
from .shards import WebCaptionDataset
from .skips import SKIP_REASONS, SkipCounter, SkippedSample

__all__ = [
    "AugmentConfig", "TrainTransform", "CaptionDataConfig", "build_caption_dataset", "CocoCaptionDataset",
    "JsonlCaptionDataset", "CategoryConfig", "CategoryExtractor", "CaptionBatch", "CaptionCollator",
    "CaptionLoader", "ResumableDistributedSampler", "CaptionRecord", "CaptionSample", "SampleBuilder",
    "WebCaptionDataset", "SKIP_REASONS", "SkipCounter", "SkippedSample",
]
