"""Training augmentation (docs/method.md §7): random resized crop + horizontal flip, then normalisation.

Randomness comes from a `random.Random` passed per sample (seeded by the dataset from the seed, the epoch and
the sample key), not from a global generator, so a sample gets the same crop whichever worker loads it and
whether or not the run was resumed. Mean and std come from the model's preprocess config.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
from PIL import Image

from ..config import ConfigError

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
_MAX_PIXEL = 255.0


@dataclass
class AugmentConfig:
    """Random-resized-crop augmentation (torchvision's algorithm, reimplemented to take a per-sample RNG).

    Attributes:
        image_size: output side S (the paper trains at 224).
        scale: range of the crop's area as a fraction of the image.
        ratio: range of the crop's aspect ratio (width / height).
        hflip_prob: probability of a horizontal flip.
        interpolation: resampling filter ("bicubic" as CLIP's preprocessing).
        crop_attempts: random tries before falling back to a centre crop.
    """

    image_size: int = 224
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_prob: float = 0.5
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    crop_attempts: int = 10

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ConfigError(f"augment.image_size must be positive, got {self.image_size}")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ConfigError(f"augment.scale must be (min, max) with 0 < min <= max <= 1, got {self.scale}")
        if len(self.ratio) != 2 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ConfigError(f"augment.ratio must be (min, max) with 0 < min <= max, got {self.ratio}")
        if not 0 <= self.hflip_prob <= 1:
            raise ConfigError(f"augment.hflip_prob must be in [0, 1], got {self.hflip_prob}")
        if self.interpolation not in _RESAMPLE:
            raise ConfigError(f"augment.interpolation: {self.interpolation!r} is not one of {list(_RESAMPLE)}")
        if self.crop_attempts < 1:
            raise ConfigError(f"augment.crop_attempts must be at least 1, got {self.crop_attempts}")


class TrainTransform:
    """PIL RGB image -> normalised float32 tensor [3, S, S].

    Args:
        config: crop/flip settings.
        mean: per-channel mean of the model's preprocessing (3 values, on the 0-1 scale).
        std: per-channel std (3 positive values).

    Raises:
        ValueError: mean/std without 3 values or a non-positive std.
    """

    def __init__(self, config: AugmentConfig, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each and std > 0, got mean={mean}, std={std}")
        self.config = config
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def crop_box(self, width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
        """A random crop (left, top, crop width, crop height) of a width x height image."""
        cfg = self.config
        area = width * height
        log_ratio = (math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
        for _ in range(cfg.crop_attempts):
            target = area * rng.uniform(*cfg.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return rng.randint(0, width - w), rng.randint(0, height - h), w, h
        # Fallback (as torchvision): the largest centre crop whose aspect ratio lies within `ratio`.
        aspect = width / height
        if aspect < cfg.ratio[0]:
            w, h = width, round(width / cfg.ratio[0])
        elif aspect > cfg.ratio[1]:
            w, h = round(height * cfg.ratio[1]), height
        else:
            w, h = width, height
        return (width - w) // 2, (height - h) // 2, w, h

    def __call__(self, image: Image.Image, rng: random.Random) -> torch.Tensor:
        """Crop, resize, maybe flip and normalise one image: float32 [3, S, S]."""
        size = self.config.image_size
        left, top, w, h = self.crop_box(image.width, image.height, rng)
        out = image.convert("RGB").resize((size, size), _RESAMPLE[self.config.interpolation],
                                          box=(left, top, left + w, top + h))
        if rng.random() < self.config.hflip_prob:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        pixels = torch.from_numpy(np.asarray(out, dtype=np.float32) / _MAX_PIXEL).permute(2, 0, 1)  # HWC -> CHW
        return (pixels - self.mean) / self.std
