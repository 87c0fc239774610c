"""Noun phrases from spaCy's parser (docs/method.md §7), used when spaCy and an English model are installed.

spaCy is imported lazily: it is an optional dependency, and the lexicon matcher covers machines without it.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Iterable

# Chunk tokens dropped in front of the head: determiners, possessives, numbers, pronouns (docs/method.md §7).
_DROP_DEPS = frozenset({"det", "predet", "poss", "case", "nummod", "quantmod"})
_DROP_POS = frozenset({"DET", "NUM", "PRON", "PART", "PUNCT"})
_NOUN_POS = frozenset({"NOUN", "PROPN"})
_COMPOUND_DEP = "compound"


def spacy_available() -> bool:
    """Whether the spaCy package can be imported (the model may still be missing)."""
    return importlib.util.find_spec("spacy") is not None


def load_spacy(model: str) -> Any:
    """Load a spaCy pipeline for noun chunks (named-entity recognition off, it is not needed).

    Raises:
        ImportError: spaCy or the model is not installed; the message says how to install them.
    """
    try:
        import spacy

        return spacy.load(model, disable=["ner"])
    except (ImportError, OSError) as exc:
        raise ImportError(f"category backend 'spacy' needs spaCy and the {model!r} model "
                          f"(pip install spacy && python -m spacy download {model}): {exc}") from exc


def _chunk_phrase(chunk: Any, keep_modifiers: bool) -> str | None:
    """Head lemma of a noun chunk, with its compound nouns (and, if asked, its other modifiers) in front."""
    root = chunk.root
    if root.pos_ not in _NOUN_POS:
        return None
    words = []
    for token in chunk:
        if token.i >= root.i:
            break
        if token.dep_ in _DROP_DEPS or token.pos_ in _DROP_POS:
            continue
        if keep_modifiers or token.dep_ == _COMPOUND_DEP:
            words.append(token.text.lower())
    return " ".join([*words, root.lemma_.lower()])


def spacy_phrases(doc: Any, keep_modifiers: bool) -> list[str]:
    """Category phrases of a parsed caption in caption order: noun chunks, then nouns outside any chunk.

    Args:
        doc: a spaCy ``Doc`` (anything with ``noun_chunks`` and tokens carrying ``i``, ``pos_``, ``dep_``,
            ``lemma_`` and ``text``).
        keep_modifiers: keep adjectives and other modifiers of the head ("red car"); compound nouns
            ("coffee table") are always kept.
    """
    found: list[tuple[int, str]] = []
    covered: set[int] = set()
    for chunk in doc.noun_chunks:
        covered.update(token.i for token in chunk)
        phrase = _chunk_phrase(chunk, keep_modifiers)
        if phrase:
            found.append((chunk.root.i, phrase))
    tokens: Iterable[Any] = doc
    found += [(t.i, t.lemma_.lower()) for t in tokens if t.pos_ == "NOUN" and t.i not in covered]
    return [phrase for _, phrase in sorted(found)]
