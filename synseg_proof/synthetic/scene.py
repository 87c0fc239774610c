"""Procedural scenes: coloured shapes over stuff regions, with a caption and exact pixel ground truth.

Every scene is a pure function of (domain, image size, seed, index): ``SceneGenerator(...).generate(i)`` draws
from ``numpy.random.default_rng([seed, i])``, so any sample can be regenerated alone, in any order.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .captions import NUMBER_WORDS, make_caption
from .domains import DomainConfig, get_domain
from .shapes import shape_mask
from .stuff import render_stuff, stuff_layout
from .vocabulary import COLOURS, STUFF, split_thing_category

Size = tuple[int, int]
MIN_IMAGE_SIZE = 16


@dataclass(frozen=True)
class PlacedObject:
    """One drawn object. ``centre`` is (x, y) in pixels, ``radius`` the circumradius in pixels."""

    category: str
    centre: tuple[float, float]
    radius: float
    angle_deg: float


@dataclass
class Scene:
    """A generated image with its caption and ground truth.

    Attributes:
        image: uint8 RGB [H, W, 3].
        segmentation: uint8 [H, W]; every pixel holds the index of its category in ``categories``.
        categories: categories present, in the order the caption mentions them (things, then stuff).
        caption: natural-language caption that names every object (with counts) and every stuff region.
        objects: the objects in drawing order (later ones occlude earlier ones).
        stuff: stuff categories from the top region down.
        domain: name of the domain the scene was drawn from.
    """

    image: np.ndarray
    segmentation: np.ndarray
    categories: list[str]
    caption: str
    objects: list[PlacedObject]
    stuff: list[str]
    domain: str

    def mask(self, category: str) -> np.ndarray:
        """bool [H, W] pixels of one category (all False when it is absent)."""
        if category not in self.categories:
            return np.zeros(self.segmentation.shape, dtype=bool)
        return self.segmentation == self.categories.index(category)

    def label_map(self, class_ids: Mapping[str, int]) -> np.ndarray:
        """Class-id map for a class list: uint8 [H, W].

        Args:
            class_ids: category -> class id for every category present.

        Raises:
            ValueError: a present category has no class id.
        """
        missing = [c for c in self.categories if c not in class_ids]
        if missing:
            raise ValueError(f"categories {missing} of this scene have no class id; the class list has "
                             f"{sorted(class_ids)}")
        lookup = np.array([class_ids[c] for c in self.categories], dtype=np.uint8)
        return lookup[self.segmentation]


class SceneGenerator:
    """Deterministic scene source over one or more domains.

    Args:
        domains: domains (or registered domain names); each scene picks one uniformly at random.
        image_size: side of the square images in pixels.
        seed: base seed; scene ``i`` depends only on (seed, i) and the settings.

    Raises:
        ValueError: no domains, an unknown domain name, or an image size below MIN_IMAGE_SIZE.
    """

    def __init__(self, domains: Sequence[DomainConfig | str], image_size: int, seed: int) -> None:
        if not domains:
            raise ValueError("a scene generator needs at least one domain")
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE} pixels, got {image_size}")
        self.domains = [get_domain(d) if isinstance(d, str) else d for d in domains]
        self.image_size = image_size
        self.seed = seed

    def generate(self, index: int) -> Scene:
        """Scene number ``index`` (any non-negative int)."""
        if index < 0:
            raise ValueError(f"scene index must be non-negative, got {index}")
        rng = np.random.default_rng([self.seed, index])
        domain = self.domains[int(rng.integers(len(self.domains)))]
        return generate_scene(domain, (self.image_size, self.image_size), rng)


def generate_scene(domain: DomainConfig, size: Size, rng: np.random.Generator) -> Scene:
    """Draw one scene from a domain.

    Raises:
        RuntimeError: no placement met the domain's visibility constraints within ``max_tries``.
    """
    stuff = _pick_stuff(domain, rng)
    layout = stuff_layout(rng, len(stuff), size, domain.boundary, domain.boundary_wave)
    things = _pick_things(domain, rng)
    objects, masks, full_masks = _place_objects(domain, things, layout, len(stuff), size, rng)

    image = np.zeros((*size, 3), dtype=np.float32)
    for region, name in enumerate(stuff):
        canvas = render_stuff(name, size, rng, domain.textured, domain.brightness_jitter)
        image[layout == region] = canvas[layout == region]

    groups = list(Counter(things))  # distinct categories in first-drawn order
    rng.shuffle(groups)
    categories = groups + stuff
    segmentation = np.array([len(groups) + r for r in range(len(stuff))], dtype=np.uint8)[layout]
    outline_px = max(1, round(domain.outline_width * min(size))) if domain.outline_width > 0 else 0
    for obj, mask, full in zip(objects, masks, full_masks):
        image[mask] = _object_pixels(domain, obj, mask, rng)
        if outline_px:
            image[mask & ~_erode(full, outline_px)] = domain.outline_rgb
        segmentation[mask] = categories.index(obj.category)

    counts = Counter(things)
    caption = make_caption([(g, counts[g]) for g in groups], stuff, rng)
    return Scene(
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8), segmentation=segmentation,
        categories=categories, caption=caption, objects=objects, stuff=stuff, domain=domain.name,
    )


def _pick_stuff(domain: DomainConfig, rng: np.random.Generator) -> list[str]:
    """Stuff of each region, top first; a top-only stuff (sky) is moved to the top."""
    count = int(rng.integers(domain.stuff_regions[0], domain.stuff_regions[1] + 1))
    chosen = [str(s) for s in rng.choice(domain.stuff, size=count, replace=False)]
    return sorted(chosen, key=lambda s: not STUFF[s].top_only)


def _pick_things(domain: DomainConfig, rng: np.random.Generator) -> list[str]:
    """Object categories in drawing order; repeats make counted phrases."""
    vocabulary = domain.things()
    count = int(rng.integers(domain.num_objects[0], domain.num_objects[1] + 1))
    things = [vocabulary[int(rng.integers(len(vocabulary)))]]
    for _ in range(count - 1):
        repeat = rng.random() < domain.repeat_probability and max(Counter(things).values()) < max(NUMBER_WORDS)
        pool = things if repeat else vocabulary
        things.append(pool[int(rng.integers(len(pool)))])
    return things


def _place_objects(domain: DomainConfig, things: Sequence[str], layout: np.ndarray, regions: int, size: Size,
                   rng: np.random.Generator) -> tuple[list[PlacedObject], list[np.ndarray], list[np.ndarray]]:
    """Positions, sizes and rotations such that every object and stuff region stays visible.

    Returns:
        the objects, their visible masks (after occlusion by later objects) and their full masks (bool [H, W]).
    """
    side = min(size)
    for _ in range(domain.max_tries):
        objects, full = [], []
        for category in things:
            _, shape = split_thing_category(category)
            radius = rng.uniform(*domain.object_size) * side / 2
            centre = (rng.uniform(radius, size[1] - radius), rng.uniform(radius, size[0] - radius))
            angle = 0.0 if shape == "circle" else rng.uniform(-domain.max_rotation_deg, domain.max_rotation_deg)
            objects.append(PlacedObject(category, centre, radius, angle))
            full.append(shape_mask(shape, centre, radius, angle, size))
        visible = _visible_masks(full)
        covered = np.logical_or.reduce(visible)
        objects_ok = all(v.sum() >= domain.min_visible_fraction * max(f.sum(), 1) and v.any()
                         for v, f in zip(visible, full))
        stuff_ok = all(((layout == r) & ~covered).sum() >= domain.min_stuff_fraction * layout.size
                       for r in range(regions))
        if objects_ok and stuff_ok:
            return objects, visible, full
    raise RuntimeError(f"domain {domain.name!r}: could not place {len(things)} objects of size {domain.object_size} "
                       f"in {size} within {domain.max_tries} tries; lower num_objects or object_size, or relax "
                       f"min_visible_fraction ({domain.min_visible_fraction}) / min_stuff_fraction "
                       f"({domain.min_stuff_fraction})")


def _erode(mask: np.ndarray, pixels: int) -> np.ndarray:
    """The mask shrunk by ``pixels`` on every side (pixels beyond the image border count as inside)."""
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), dtype=np.uint8)
    return cv2.erode(mask.astype(np.uint8), kernel).astype(bool)


def _visible_masks(full: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Painter's order: each object loses the pixels of every object drawn after it."""
    visible, above = [], np.zeros_like(full[0])
    for mask in reversed(full):
        visible.append(mask & ~above)
        above = above | mask
    return visible[::-1]


def _object_pixels(domain: DomainConfig, obj: PlacedObject, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB of an object's visible pixels: float [N, 3] for the N True pixels of ``mask``."""
    colour, _ = split_thing_category(obj.category)
    rgb = np.asarray(COLOURS[colour], dtype=np.float32) + rng.uniform(-domain.colour_jitter, domain.colour_jitter, 3)
    if domain.object_style == "flat":
        return np.broadcast_to(rgb, (int(mask.sum()), 3))
    rows = np.nonzero(mask)[0].astype(np.float32)
    # Light from above: +shading/2 at the top of the enclosing circle, -shading/2 at its bottom.
    relative = (rows - (obj.centre[1] - obj.radius)) / (2 * obj.radius)
    gain = 1 + domain.shading * (0.5 - relative) + domain.grain * rng.standard_normal(rows.shape[0])
    return gain[:, None] * rgb
