"""Mask-supervised training pairs from a segmentation split: each image with the binary mask of every category it
contains and of a few categories it does not contain (stage 2 of the proof, and the supervised ceiling).

A split is the synthetic writer's layout (``manifest.jsonl`` + ``split.json`` + ``annotations/``): the annotation
holds class ids of ``split.json``'s class list, so the mask of category c is ``annotation == classes.index(c)``.
Batches are a pure function of (seed, step), so a resumed run sees exactly the batches it would have seen.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from synseg_core.evaluation.datasets import read_image, read_label
from .synthetic.writers import BACKGROUND, INFO_FILE, read_manifest


@dataclass
class MaskBatch:
    """B images and M (image, category) pairs with their target masks.

    Attributes:
        images: float32 [B, 3, S, S], normalised with the model's mean/std.
        categories: the M category names, grouped by image.
        owner: int64 [M], image index of each pair.
        masks: float32 [M, S, S], 1 inside the category, 0 elsewhere (all 0 for an absent category).
        present: bool [M], the category occurs in its image.
    """

    images: torch.Tensor
    categories: list[str]
    owner: torch.Tensor
    masks: torch.Tensor
    present: torch.Tensor


def split_vocabulary(split_dir: str | Path) -> tuple[list[str], list[str]]:
    """(class list in id order, categories that get masks) of a segmentation split.

    In ``things`` label mode the first class is background and stuff pixels are background, so only the things
    get masks; in ``all`` mode every class does.

    Raises:
        ValueError: no ``split.json``, or the split is not a segmentation split.
    """
    path = Path(split_dir) / INFO_FILE
    if not path.is_file():
        raise ValueError(f"{split_dir} has no {INFO_FILE}; write the split with synseg_proof/cli/make_dataset.py")
    info = json.loads(path.read_text())
    if info.get("kind") != "segmentation":
        raise ValueError(f"{split_dir} is a {info.get('kind')!r} split; mask training needs a 'segmentation' split")
    classes = list(info["classes"])
    return classes, [c for c in classes if c != BACKGROUND]


class MaskPairs:
    """Batches of (image, category, mask) pairs drawn from one segmentation split.

    Args:
        split_dir: the split folder.
        image_size: side S the images and masks are resized to (the model's train size).
        mean, std: the model's normalisation.
        absent_per_image: categories of the split's vocabulary that are not in an image, paired with it as
            all-zero masks (so the decoder learns to stay dark for what is not there).
        hflip_prob: probability of mirroring an image with its masks.
        seed: seeds the image choice, the absent categories and the flips of every step.

    Raises:
        ValueError: not a segmentation split, or a bad setting.
    """

    def __init__(self, split_dir: str | Path, image_size: int, mean: Sequence[float], std: Sequence[float],
                 absent_per_image: int, hflip_prob: float, seed: int):
        if absent_per_image < 0:
            raise ValueError(f"absent_per_image must be >= 0, got {absent_per_image}")
        if not 0 <= hflip_prob <= 1:
            raise ValueError(f"hflip_prob must be in [0, 1], got {hflip_prob}")
        self.classes, self.vocabulary = split_vocabulary(split_dir)
        self.records = read_manifest(split_dir)
        self.image_size = image_size
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.absent_per_image = absent_per_image
        self.hflip_prob = hflip_prob
        self.seed = seed

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image float32 [S, S, 3] in 0..1 and label int64 [S, S] at the training size."""
        record = self.records[index]
        image, label = read_image(Path(record["image"])), read_label(Path(record["annotation"]))
        size = (self.image_size, self.image_size)
        if image.shape[:2] != size:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            label = cv2.resize(label.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(np.int64)
        return image.astype(np.float32) / 255.0, label

    def batch(self, step: int, batch_size: int) -> MaskBatch:
        """The batch of training step ``step``: ``batch_size`` distinct images (fewer if the split is smaller)."""
        rng = np.random.default_rng([self.seed, step])
        chosen = rng.choice(len(self.records), size=min(batch_size, len(self.records)), replace=False)
        images, masks, names, owner, present = [], [], [], [], []
        for b, index in enumerate(chosen.tolist()):
            image, label = self._load(index)
            if rng.random() < self.hflip_prob:
                image, label = image[:, ::-1], label[:, ::-1]
            images.append((image - self.mean) / self.std)
            here = [c for c in self.records[index]["categories"] if c in self.vocabulary]
            others = [c for c in self.vocabulary if c not in here]
            picked = rng.choice(len(others), size=min(self.absent_per_image, len(others)), replace=False)
            for name in here + [others[i] for i in sorted(picked.tolist())]:
                masks.append(label == self.classes.index(name))
                names.append(name)
                owner.append(b)
                present.append(name in here)
        return MaskBatch(
            images=torch.from_numpy(np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))),
            categories=names,
            owner=torch.tensor(owner, dtype=torch.int64),
            masks=torch.from_numpy(np.stack(masks)).float(),
            present=torch.tensor(present, dtype=torch.bool),
        )
