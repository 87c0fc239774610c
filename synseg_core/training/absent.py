"""Absent-category pairs for the `loss.absent_weight` extension: categories that other images in the batch name
but this image's caption does not (docs/method.md §6.1: MCCL never trains present against absent)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..data import CaptionBatch


def absent_pairs(categories: Sequence[str], owner: torch.Tensor, n_images: int, per_image: int,
                 generator: torch.Generator) -> tuple[list[str], torch.Tensor]:
    """Pick up to `per_image` absent categories for every image, at random among the batch's other categories.

    Args:
        categories: the batch's flat category list (M names).
        owner: [M] image index of each category.
        n_images: B.
        per_image: the most absent categories per image.
        generator: randomness (seeded by the caller, so a resumed run draws the same pairs).

    Returns:
        (absent category names [A], their image index [A] as int64 on `owner`'s device).
    """
    owners = owner.tolist()
    own: list[set[str]] = [set() for _ in range(n_images)]
    for name, b in zip(categories, owners):
        own[b].add(name)
    pool = list(dict.fromkeys(categories))  # unique, in batch order (deterministic)
    names: list[str] = []
    absent_owner: list[int] = []
    for b in range(n_images):
        candidates = [c for c in pool if c not in own[b]]
        if not candidates:
            continue
        order = torch.randperm(len(candidates), generator=generator)[:per_image].tolist()
        names.extend(candidates[i] for i in order)
        absent_owner.extend([b] * len(order))
    return names, torch.tensor(absent_owner, dtype=torch.int64, device=owner.device)


def absent_inputs(batch: CaptionBatch, per_image: int, seed: Sequence[int],
                  text: Callable[[list[str]], torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Text embeddings [A, D] and owners [A] of a batch's absent pairs (None, None when there are none).

    Args:
        batch: the batch (on its device).
        per_image: the most absent categories per image.
        seed: (training seed, rank, step), so a resumed run draws the same pairs.
        text: category names -> embeddings.
    """
    state = int(np.random.SeedSequence(list(seed)).generate_state(1)[0])
    names, owner = absent_pairs(batch.categories, batch.owner, len(batch), per_image,
                                torch.Generator().manual_seed(state))
    if not names:
        return None, None
    return text(names), owner
