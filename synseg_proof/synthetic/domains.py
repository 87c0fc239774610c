"""Domains: the distributions that synthetic scenes are drawn from (backgrounds, object sizes and styles, vocabulary).

Two are registered. ``source`` plays PhraseCut's role for the stage-2 mask-trained decoder: four of the stuff
kinds, one stuff region, one or two large objects, and a vocabulary that leaves some thing and stuff categories out
entirely. ``target`` plays CC12M's and the benchmarks' role for stage 3: every stuff kind, one or two stuff regions,
smaller objects, more of them, and the full vocabulary. Both draw textured stuff and shaded objects: with flat
source images (the first design) the mask-trained decoder scored 3.5% mIoU on target validation against a 38%
supervised ceiling, a style gap far wider than PhraseCut's to CC12M (docs/proof_of_learning.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .vocabulary import STUFF, all_stuff_categories, all_thing_categories

# Never drawn in the source domain, so a decoder trained with source masks never sees a mask of them. Each
# colour and each shape still occurs in other source categories, so they are new compositions, not new words.
SOURCE_HELD_OUT_THINGS: tuple[str, ...] = (
    "red star", "orange cross", "yellow circle", "green square", "blue triangle", "purple circle",
)
SOURCE_STUFF: tuple[str, ...] = ("grass", "water", "sand", "sky")


@dataclass(frozen=True)
class DomainConfig:
    """One scene distribution.

    Attributes:
        name: domain name (recorded with every generated split).
        stuff: stuff categories that can appear.
        textured: stuff drawn with its texture recipe (else flat colours).
        object_style: "flat" fills objects with one colour; "shaded" adds a vertical light gradient and grain.
        stuff_regions: (min, max) stuff regions per image (1 or 2, stacked along a wavy boundary).
        num_objects: (min, max) objects per image.
        object_size: (min, max) object diameter as a fraction of the image side.
        excluded_things: thing categories never drawn in this domain.
        repeat_probability: chance that each object after the first copies an earlier object's category
            (gives counted phrases such as "two blue squares").
        max_rotation_deg: objects are rotated uniformly within +- this angle. Off in the registered domains: a
            tiny ViT trained from scratch learnt shape far more slowly with rotated shapes.
        colour_jitter: per-object, per-channel RGB offset range (+-).
        brightness_jitter: per-region stuff brightness factor range (1 +-).
        shading: "shaded" objects: relative brightness difference between their top and bottom.
        grain: "shaded" objects: relative per-pixel brightness noise.
        outline_width: width of a dark contour drawn just inside each object's edge, as a fraction of the image
            side (at least 1 pixel; 0 = none). The contour pixels belong to the object. It makes shape legible
            to a tiny ViT: without it, a patch's edge pattern is entangled with the object's and the background's
            colours, and shape accuracy stayed near 40-50% after 2000 CLIP steps (with it, a supervised probe
            learnt shape about 3x faster).
        outline_rgb: colour of that contour.
        min_visible_fraction: an object must keep this fraction of its area after occlusion by later objects.
        min_stuff_fraction: each stuff region must keep this fraction of the image after the objects.
        boundary: range of the mean height of a two-region boundary, as a fraction of the image height.
        boundary_wave: amplitude of the boundary's waviness, as a fraction of the image height.
        max_tries: placement attempts before a scene is declared impossible under these settings.
    """

    name: str
    stuff: tuple[str, ...]
    textured: bool
    object_style: Literal["flat", "shaded"]
    stuff_regions: tuple[int, int]
    num_objects: tuple[int, int]
    object_size: tuple[float, float]
    excluded_things: tuple[str, ...] = ()
    repeat_probability: float = 0.3
    max_rotation_deg: float = 0.0
    colour_jitter: float = 12.0
    brightness_jitter: float = 0.08
    shading: float = 0.35
    grain: float = 0.05
    outline_width: float = 0.03
    outline_rgb: tuple[int, int, int] = (20, 20, 20)
    min_visible_fraction: float = 0.7
    min_stuff_fraction: float = 0.08
    boundary: tuple[float, float] = (0.35, 0.65)
    boundary_wave: float = 0.05
    max_tries: int = 200

    def __post_init__(self) -> None:
        unknown_stuff = [s for s in self.stuff if s not in STUFF]
        if not self.stuff or unknown_stuff:
            raise ValueError(f"domain {self.name!r}: stuff {list(self.stuff)} must be a non-empty subset of "
                             f"{list(STUFF)}")
        things = all_thing_categories()
        unknown_things = [t for t in self.excluded_things if t not in things]
        if unknown_things:
            raise ValueError(f"domain {self.name!r}: excluded_things {unknown_things} are not thing categories; "
                             f"valid ones are {things}")
        if self.object_style not in ("flat", "shaded"):
            raise ValueError(f"domain {self.name!r}: object_style {self.object_style!r} must be 'flat' or 'shaded'")
        _check_range(self.name, "stuff_regions", self.stuff_regions, 1, 2)
        _check_range(self.name, "num_objects", self.num_objects, 1, 6)
        _check_range(self.name, "object_size", self.object_size, 0.05, 1.0)
        _check_range(self.name, "boundary", self.boundary, 0.0, 1.0)
        if self.stuff_regions[1] > len(self.stuff):
            raise ValueError(f"domain {self.name!r}: {self.stuff_regions[1]} stuff regions need at least as many "
                             f"stuff kinds, got {list(self.stuff)}")

    def things(self) -> list[str]:
        """Thing categories drawn in this domain, in vocabulary order."""
        return [t for t in all_thing_categories() if t not in self.excluded_things]

    def categories(self) -> list[str]:
        """Every category that can appear: things then stuff, in vocabulary order."""
        return self.things() + [s for s in all_stuff_categories() if s in self.stuff]


def _check_range(domain: str, field: str, value: tuple, low: float, high: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"domain {domain!r}: {field} {value} must be (min, max) with {low} <= min <= max <= {high}")


DOMAINS: dict[str, DomainConfig] = {
    "source": DomainConfig(
        name="source", stuff=SOURCE_STUFF, textured=True, object_style="shaded", stuff_regions=(1, 1),
        num_objects=(1, 2), object_size=(0.4, 0.65), excluded_things=SOURCE_HELD_OUT_THINGS,
    ),
    "target": DomainConfig(
        name="target", stuff=tuple(all_stuff_categories()), textured=True, object_style="shaded",
        stuff_regions=(1, 2), num_objects=(1, 3), object_size=(0.3, 0.55),
    ),
}


def list_domains() -> list[str]:
    """Names of the registered domains."""
    return sorted(DOMAINS)


def get_domain(name: str) -> DomainConfig:
    """A registered domain by name.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; registered domains are {list_domains()}")
    return DOMAINS[name]

