"""Category queries: "person, chair; open door" -> ["person", "chair", "open door"].

The one parser shared by the ROS node (query topic and `categories` parameter) and any other front end, so a
query means the same everywhere. Pure Python, no ROS and no torch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Commas, semicolons and line breaks all separate categories; a category itself may contain spaces.
_SEPARATORS = re.compile(r"[,;\r\n]+")
_WHITESPACE = re.compile(r"\s+")


class QueryError(ValueError):
    """A query is unusable (empty, too many categories, a category too long); the message says why."""


@dataclass(frozen=True)
class QueryLimits:
    """Bounds on one query; a query over them is rejected whole."""

    max_categories: int = 64  # how many categories one query may hold
    max_length: int = 64  # characters per category, after whitespace is normalised

    def __post_init__(self) -> None:
        for name in ("max_categories", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise QueryError(f"QueryLimits.{name} must be an integer >= 1, got {value!r}")


def parse_query(text: str, limits: QueryLimits | None = None) -> list[str]:
    """Split a query into a clean category list.

    Categories are separated by commas, semicolons or newlines. Each is stripped and inner runs of whitespace
    become one space; empty entries are dropped, and so are duplicates (compared case-insensitively, the first
    spelling is kept), preserving order.

    Args:
        text: the raw query, e.g. "person, chair;\\nopen door".
        limits: bounds on count and length (defaults: `QueryLimits()`).

    Returns:
        The categories in query order; never empty.

    Raises:
        QueryError: `text` is not a string, holds no category, has more than `limits.max_categories`
            categories, or a category longer than `limits.max_length` characters.
    """
    limits = limits or QueryLimits()
    if not isinstance(text, str):
        raise QueryError(f"a query must be a string of categories separated by ',', ';' or newlines, "
                         f"got {type(text).__name__} {text!r}")
    categories: list[str] = []
    seen: set[str] = set()
    for part in _SEPARATORS.split(text):
        name = _WHITESPACE.sub(" ", part).strip()
        key = name.casefold()
        if not name or key in seen:
            continue
        if len(name) > limits.max_length:
            raise QueryError(f"category {name[:limits.max_length]!r}... is {len(name)} characters long; "
                             f"at most {limits.max_length} are allowed")
        seen.add(key)
        categories.append(name)
    if not categories:
        raise QueryError(f"query {text!r} holds no category; give names separated by ',', ';' or newlines, "
                         f"e.g. 'person, chair'")
    if len(categories) > limits.max_categories:
        raise QueryError(f"query has {len(categories)} categories; at most {limits.max_categories} are allowed")
    return categories
