"""Stage-1 CLIP metrics on freshly generated scenes: zero-shot colour / shape / stuff accuracy and retrieval."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from .clip_model import ClipPretrainConfig, normalise_images
from .domains import DomainConfig
from .scene import Scene, SceneGenerator
from .vocabulary import COLOURS, SHAPES, all_stuff_categories, all_thing_categories, split_thing_category

RETRIEVAL_TOP_K = (1, 5)
# The retrieval set uses its own seed stream, next to the zero-shot sets' eval_seed.
RETRIEVAL_SEED_OFFSET = 1


@torch.no_grad()
def encode_images(model: open_clip.CLIP, images: np.ndarray, cfg: ClipPretrainConfig) -> torch.Tensor:
    """uint8 RGB [N, H, W, 3] -> unit-norm image embeddings [N, D]."""
    device = next(model.parameters()).device
    parts = [model.encode_image(normalise_images(images[i:i + cfg.eval_batch_size], cfg.mean, cfg.std).to(device))
             for i in range(0, len(images), cfg.eval_batch_size)]
    return F.normalize(torch.cat(parts).float(), dim=-1)


@torch.no_grad()
def encode_texts(model: open_clip.CLIP, tokenizer: open_clip.tokenizer.SimpleTokenizer, texts: Sequence[str],
                 batch_size: int) -> torch.Tensor:
    """Strings -> unit-norm text embeddings [T, D]."""
    device = next(model.parameters()).device
    parts = [model.encode_text(tokenizer(list(texts[i:i + batch_size])).to(device))
             for i in range(0, len(texts), batch_size)]
    return F.normalize(torch.cat(parts).float(), dim=-1)


def single_object_domain(domain: DomainConfig) -> DomainConfig:
    """The same domain restricted to one object on one stuff region (the zero-shot probe)."""
    return dataclasses.replace(domain, name=f"{domain.name}-single", num_objects=(1, 1), stuff_regions=(1, 1))


def _scenes(domains: Sequence[DomainConfig], cfg: ClipPretrainConfig, seed: int, count: int) -> list[Scene]:
    generator = SceneGenerator(domains, cfg.image_size, seed)
    return [generator.generate(i) for i in range(count)]


def zero_shot(model: open_clip.CLIP, tokenizer: open_clip.tokenizer.SimpleTokenizer, cfg: ClipPretrainConfig,
              domain: DomainConfig) -> dict[str, dict[str, float]]:
    """Zero-shot accuracy on single-object images of a domain, per prompt template.

    The image's thing is classified among all colour x shape names; colour (shape) accuracy counts a hit when
    the predicted name has the right colour (shape). Its stuff is classified among all stuff names.

    Returns:
        template -> {"colour", "shape", "thing", "stuff"} accuracies in 0..1.
    """
    scenes = _scenes([single_object_domain(domain)], cfg, cfg.eval_seed, cfg.zero_shot_images)
    image_features = encode_images(model, np.stack([s.image for s in scenes]), cfg)
    things, stuff = all_thing_categories(), all_stuff_categories()
    true_things = [split_thing_category(s.objects[0].category) for s in scenes]
    true_stuff = np.array([stuff.index(s.stuff[0]) for s in scenes])
    results = {}
    for template in cfg.zero_shot_templates:
        thing_text = encode_texts(model, tokenizer, [template.format(t) for t in things], cfg.eval_batch_size)
        stuff_text = encode_texts(model, tokenizer, [template.format(s) for s in stuff], cfg.eval_batch_size)
        predicted = [split_thing_category(things[i]) for i in (image_features @ thing_text.T).argmax(1).tolist()]
        predicted_stuff = (image_features @ stuff_text.T).argmax(1).cpu().numpy()
        results[template] = {
            "colour": float(np.mean([p[0] == t[0] for p, t in zip(predicted, true_things)])),
            "shape": float(np.mean([p[1] == t[1] for p, t in zip(predicted, true_things)])),
            "thing": float(np.mean([p == t for p, t in zip(predicted, true_things)])),
            "stuff": float(np.mean(predicted_stuff == true_stuff)),
        }
    return results


def retrieval(model: open_clip.CLIP, tokenizer: open_clip.tokenizer.SimpleTokenizer, cfg: ClipPretrainConfig,
              domains: Sequence[DomainConfig]) -> dict[str, float]:
    """Image <-> caption retrieval recall@k on held-out scenes of the given domains.

    Generated captions repeat, so a retrieved item counts as a hit when its caption is the same string as the
    query's (an identical caption is an equally correct answer).
    """
    scenes = _scenes(domains, cfg, cfg.eval_seed + RETRIEVAL_SEED_OFFSET, cfg.retrieval_images)
    captions = np.array([s.caption for s in scenes])
    similarity = encode_images(model, np.stack([s.image for s in scenes]), cfg) @ \
        encode_texts(model, tokenizer, captions.tolist(), cfg.eval_batch_size).T  # [N images, N captions]
    same = captions[:, None] == captions[None, :]
    results = {"images": float(len(scenes)), "distinct_captions": float(len(set(captions.tolist())))}
    for k in RETRIEVAL_TOP_K:
        image_to_text = similarity.topk(k, dim=1).indices.cpu().numpy()
        text_to_image = similarity.T.topk(k, dim=1).indices.cpu().numpy()
        results[f"image_to_text_r{k}"] = float(np.mean(np.take_along_axis(same, image_to_text, 1).any(1)))
        results[f"text_to_image_r{k}"] = float(np.mean(np.take_along_axis(same, text_to_image, 1).any(1)))
    return results


def evaluate_clip(model: open_clip.CLIP, tokenizer: open_clip.tokenizer.SimpleTokenizer, cfg: ClipPretrainConfig,
                  domains: Sequence[DomainConfig]) -> dict[str, Any]:
    """All stage-1 metrics; ``min_colour`` / ``min_shape`` are the worst domain's, with the first template."""
    model.eval()
    per_domain = {d.name: zero_shot(model, tokenizer, cfg, d) for d in domains}
    primary = cfg.zero_shot_templates[0]
    return {
        "zero_shot": per_domain,
        "primary_template": primary,
        "min_colour": min(r[primary]["colour"] for r in per_domain.values()),
        "min_shape": min(r[primary]["shape"] for r in per_domain.values()),
        "chance": {"colour": 1 / len(COLOURS), "shape": 1 / len(SHAPES), "thing": 1 / len(all_thing_categories()),
                   "stuff": 1 / len(all_stuff_categories())},
        "retrieval": retrieval(model, tokenizer, cfg, domains),
    }
