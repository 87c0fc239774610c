"""YAML text and `section.key=value` dotlist overrides of nested config mappings (training and proof configs)."""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import yaml

from ..config import ConfigError

# PyYAML (YAML 1.1) reads "1e-4" as a string; this resolver reads exponent floats without a dot as numbers.
_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))


def parse_yaml(text: str, where: str) -> Any:
    """YAML text (safe loading; exponent floats such as 1e-4 are numbers); `where` names it in errors."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from exc


def parse_override(item: str) -> tuple[list[str], Any]:
    """`"optim.lr=3e-4"` -> (["optim", "lr"], 0.0003); the value is read as YAML (numbers, null, lists, ...)."""
    key, sep, raw = item.partition("=")
    path = key.strip().split(".")
    if not sep or not all(path):
        raise ConfigError(f"override {item!r} is not of the form section.key=value (e.g. optim.lr=3e-4)")
    return path, parse_yaml(raw, f"override {item!r}") if raw.strip() else ""


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Set each `a.b.c=value` in a nested dict (copied); unknown keys are caught later by `from_dict`."""
    data = _deep_copy(data)
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for depth, key in enumerate(path[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(path[:depth + 1])} is a value ({child!r}), "
                                  "not a section")
            node = child
        node[path[-1]] = value
    return data


def _deep_copy(data: Mapping) -> dict:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def deep_merge(base: Mapping, update: Mapping) -> dict:
    """`update` merged into `base` recursively (mappings merge, everything else replaces)."""
    merged = _deep_copy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
