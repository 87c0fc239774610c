"""The synthetic world's words: object colours and shapes, stuff kinds, and the category names built from them.

A thing category is "<colour> <shape>" ("red circle"); a stuff category is the stuff's name ("grass"). Colours
are saturated and chosen to stay distinct from every stuff's base colour, so a thing is visible on any stuff.
"""
from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]

COLOURS: dict[str, RGB] = {
    "red": (215, 35, 35),
    "orange": (245, 140, 20),
    "yellow": (245, 220, 30),
    "green": (40, 200, 70),
    "blue": (40, 70, 230),
    "purple": (150, 50, 200),
}

# Plural forms are listed rather than derived: "cross" -> "crosses" defeats a naive "+s".
SHAPE_PLURALS: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "cross": "crosses",
}
SHAPES: tuple[str, ...] = tuple(SHAPE_PLURALS)


@dataclass(frozen=True)
class StuffStyle:
    """How one stuff kind looks and is named.

    Attributes:
        colour: base RGB colour (the whole region when rendered flat).
        texture: name of the texture recipe in :mod:`synseg_proof.synthetic.stuff`.
        top_only: the region can only be the upper one of a two-region layout (sky).
    """

    colour: RGB
    texture: str
    top_only: bool = False


STUFF: dict[str, StuffStyle] = {
    "grass": StuffStyle((85, 125, 45), "grass"),
    "water": StuffStyle((35, 85, 150), "water"),
    "sand": StuffStyle((210, 185, 135), "sand"),
    "sky": StuffStyle((135, 190, 235), "sky", top_only=True),
    "snow": StuffStyle((232, 236, 243), "snow"),
    "road": StuffStyle((80, 80, 86), "road"),
}


def thing_category(colour: str, shape: str) -> str:
    """Category name of a coloured shape, e.g. ``thing_category("red", "circle") == "red circle"``.

    Raises:
        ValueError: unknown colour or shape.
    """
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; valid colours are {list(COLOURS)}")
    if shape not in SHAPE_PLURALS:
        raise ValueError(f"unknown shape {shape!r}; valid shapes are {list(SHAPES)}")
    return f"{colour} {shape}"


def split_thing_category(name: str) -> tuple[str, str]:
    """Inverse of :func:`thing_category`: ``"red circle" -> ("red", "circle")``.

    Raises:
        ValueError: the name is not a known colour followed by a known shape.
    """
    parts = name.split(" ")
    if len(parts) != 2 or parts[0] not in COLOURS or parts[1] not in SHAPE_PLURALS:
        raise ValueError(f"{name!r} is not a thing category '<colour> <shape>' with colour in {list(COLOURS)} "
                         f"and shape in {list(SHAPES)}")
    return parts[0], parts[1]


def all_thing_categories() -> list[str]:
    """Every colour x shape category, colour-major (the class order used in class lists)."""
    return [thing_category(c, s) for c in COLOURS for s in SHAPES]


def all_stuff_categories() -> list[str]:
    """Every stuff category in vocabulary order."""
    return list(STUFF)
