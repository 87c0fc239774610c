"""Text embeddings of training categories that do not depend on which other categories were encoded with them.

A matrix product's rows can differ in the last bits with the number of rows (the kernels block the work
differently), so encoding "dog" together with 3 new categories or with 17 gives slightly different vectors. The
model's inference cache encodes whatever is missing in one batch; for training that would make a resumed run
(whose cache starts empty) drift from the uninterrupted one. Here every encoder call has exactly `chunk`
categories (padded by repeating the last one), so each string's embedding is the same bits every time.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..model.backbone import ClipBackbone, get_templates


class ChunkedTextCache:
    """Category -> frozen text embedding [D], computed in fixed-size chunks under no_grad; oldest entries are
    dropped beyond `max_entries` (recomputing them gives the same bits).

    Args:
        backbone: the frozen CLIP (its text tower).
        template_set: prompt-template set name; the embedding is the mean over its templates.
        chunk: categories per text-encoder call.
        max_entries: cache size.
    """

    def __init__(self, backbone: ClipBackbone, template_set: str, chunk: int, max_entries: int):
        if chunk < 1 or max_entries < chunk:
            raise ValueError(f"need chunk >= 1 and max_entries >= chunk, got chunk={chunk}, max_entries={max_entries}")
        self.backbone = backbone
        self.templates = get_templates(template_set)
        self.chunk = chunk
        self.max_entries = max_entries
        self._cache: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def __call__(self, categories: Sequence[str]) -> torch.Tensor:
        """Embeddings [K, D] of `categories` (raw text projection output, float32)."""
        missing = [c for c in dict.fromkeys(categories) if c not in self._cache]
        for start in range(0, len(missing), self.chunk):
            part = missing[start:start + self.chunk]
            padded = part + [part[-1]] * (self.chunk - len(part))
            embeddings = self.backbone.encode_categories(padded, self.templates)
            self._cache.update(zip(part, embeddings))
        out = torch.stack([self._cache[c] for c in categories])
        for key in list(self._cache)[:max(0, len(self._cache) - self.max_entries)]:
            del self._cache[key]  # oldest first (dicts keep insertion order)
        return out
