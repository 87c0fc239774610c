"""Natural captions for synthetic scenes: counted thing phrases and stuff phrases in varied templates."""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from .vocabulary import SHAPE_PLURALS, split_thing_category

NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}

# {things} is a noun phrase of counted things ("a red circle and two blue squares"), {stuff} one of the stuff
# ("grass", "sky and water"), {be} agrees with the first thing group ("is" / "are").
TEMPLATES: tuple[str, ...] = (
    "{things} on {stuff}",
    "a photo of {things} on {stuff}",
    "{things} in front of {stuff}",
    "{stuff} with {things}",
    "a picture of {stuff} with {things}",
    "there {be} {things} on {stuff}",
    "an image of {things} and {stuff}",
    "{things} over {stuff}",
)


def article(word: str) -> str:
    """Indefinite article for the word that follows it."""
    return "an" if word[0] in "aeiou" else "a"


def thing_phrase(category: str, count: int) -> str:
    """``("blue square", 2) -> "two blue squares"``, ``("orange star", 1) -> "an orange star"``.

    Raises:
        ValueError: count outside 1..max(NUMBER_WORDS) or an unknown category.
    """
    colour, shape = split_thing_category(category)
    if count == 1:
        return f"{article(colour)} {colour} {shape}"
    if count not in NUMBER_WORDS:
        raise ValueError(f"cannot phrase {count} objects; counts 1..{max(NUMBER_WORDS)} are supported")
    return f"{NUMBER_WORDS[count]} {colour} {SHAPE_PLURALS[shape]}"


def join_phrases(phrases: Sequence[str]) -> str:
    """``["a", "b", "c"] -> "a, b and c"``."""
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def make_caption(things: Sequence[tuple[str, int]], stuff: Sequence[str], rng: np.random.Generator) -> str:
    """Caption naming every thing group (with its count) and every stuff region.

    Args:
        things: (thing category, count) in the order they are to be mentioned; at least one.
        stuff: stuff categories in the order they are to be mentioned; at least one.
        rng: random source (picks the template).

    Raises:
        ValueError: no things or no stuff.
    """
    if not things or not stuff:
        raise ValueError(f"a caption needs at least one thing and one stuff region, got {things} and {stuff}")
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    return template.format(
        things=join_phrases([thing_phrase(c, n) for c, n in things]),
        stuff=join_phrases(list(stuff)),
        be="is" if things[0][1] == 1 else "are",
    )


_SHAPE_WORD = re.compile(r"\b(" + "|".join(sorted({*SHAPE_PLURALS, *SHAPE_PLURALS.values()}, key=len, reverse=True))
                         + r")\b")
_SINGULAR = {plural: shape for shape, plural in SHAPE_PLURALS.items()}


def swap_shape(caption: str, rng: np.random.Generator) -> str:
    """The caption with one shape word replaced by another shape (same number): a hard negative that differs
    from the true caption only in shape, e.g. "two red circles on grass" -> "two red stars on grass".

    Raises:
        ValueError: the caption names no shape.
    """
    matches = list(_SHAPE_WORD.finditer(caption))
    if not matches:
        raise ValueError(f"caption {caption!r} names no shape of {list(SHAPE_PLURALS)}")
    match = matches[int(rng.integers(len(matches)))]
    word = match.group(0)
    plural = word in _SINGULAR
    shape = _SINGULAR.get(word, word)
    others = [s for s in SHAPE_PLURALS if s != shape]
    new = others[int(rng.integers(len(others)))]
    return caption[:match.start()] + (SHAPE_PLURALS[new] if plural else new) + caption[match.end():]
