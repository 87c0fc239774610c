"""Offline noun-phrase finder: longest-match lookup of caption words in the visual-noun lexicon.

Without a parser, three cheap rules stand in for part-of-speech tags:
* the head of a noun compound is its last noun: in "stone bridge" or "orange circle" the first noun is a
  modifier (a match directly followed by another match or by a colour word is not a head);
* a colour word used as a noun right after a copula is an adjective ("the car is orange");
* a match right after a subject pronoun or a modal is a verb ("they water the plants").
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .vocabulary import Lexicon

# A word with inner hyphens or apostrophes ("t-shirt", "dog's"), or any other single non-space character.
_TOKEN = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*|\S")
_POSSESSIVE = re.compile(r"['’]s$")  # "dog's"; in "dogs'" the apostrophe is a token of its own
# Closed-class words that signal the next word is a verb or a predicate adjective, not a noun.
VERB_CUES = frozenset({
    "i", "you", "we", "they", "he", "she", "can", "cannot", "could", "will", "would", "shall", "should", "may",
    "might", "must", "don't", "doesn't", "didn't", "won't", "let's", "please",
})
COPULAS = frozenset({"is", "are", "was", "were", "be", "been", "being", "look", "looks", "looked", "painted"})


@dataclass(frozen=True)
class Token:
    """One caption token: a lower-case word (possessive ending removed) or a punctuation/digit character."""

    text: str
    is_word: bool
    possessive: bool = False
    forced: str | None = None  # a placeholder (the <PERSON> token) that always yields this category


@dataclass(frozen=True)
class _Match:
    start: int
    end: int
    canonical: str


def tokenize(caption: str, person_token: str, person_category: str) -> list[Token]:
    """Split a caption into tokens; every occurrence of `person_token` becomes a forced `person_category`."""
    tokens: list[Token] = []
    for n, segment in enumerate(re.split(re.escape(person_token), caption, flags=re.IGNORECASE)):
        if n:
            tokens.append(Token(person_category, is_word=True, forced=person_category))
        for raw in _TOKEN.findall(segment.lower()):
            if not raw[0].isalpha():
                tokens.append(Token(raw, is_word=False))
                continue
            word = _POSSESSIVE.sub("", raw)
            tokens.append(Token(word, is_word=True, possessive=word != raw))
    return tokens


def _find_matches(tokens: list[Token], lexicon: Lexicon) -> list[_Match]:
    """Greedy longest matches, left to right; a possessive word ends a span."""
    matches, i = [], 0
    while i < len(tokens):
        if tokens[i].forced:
            matches.append(_Match(i, i + 1, tokens[i].forced))
            i += 1
            continue
        for length in range(min(lexicon.max_words, len(tokens) - i), 0, -1):
            span = tokens[i:i + length]
            if all(t.is_word and not t.forced for t in span) and not any(t.possessive for t in span[:-1]):
                canonical = lexicon.lookup([t.text for t in span])
                if canonical is not None:
                    matches.append(_Match(i, i + length, canonical))
                    i += length
                    break
        else:
            i += 1
    return matches


def _is_head(match: _Match, tokens: list[Token], starts: set[int], lexicon: Lexicon) -> bool:
    """Whether a match names a thing (see the module docstring for the rules)."""
    if tokens[match.start].forced:
        return True
    last, after = tokens[match.end - 1], tokens[match.end] if match.end < len(tokens) else None
    if not last.possessive and after is not None and (match.end in starts or after.text in lexicon.modifiers):
        return False  # compound modifier: "stone bridge", "orange circle", "sky blue"
    before = tokens[match.start - 1].text if match.start else ""
    if match.end - match.start == 1 and last.text in lexicon.modifiers and before in COPULAS:
        return False  # "the car is orange"
    return before not in VERB_CUES


def _modifier_prefix(match: _Match, tokens: list[Token], by_end: dict[int, _Match], lexicon: Lexicon) -> list[str]:
    """Colour/shade words and compound nouns directly before a head ("two light blue squares" -> light, blue)."""
    prefix, j = [], match.start
    while j > 0:
        before = by_end.get(j)
        span = tokens[before.start:before.end] if before else []
        if span and not any(t.possessive or t.forced for t in span):
            prefix[:0] = [t.text for t in span]  # a compound noun: "stone" in "stone bridge"
            j = before.start
            continue
        token = tokens[j - 1]
        if not (token.is_word and not token.possessive and token.text in lexicon.modifiers):
            break
        prefix.insert(0, token.text)
        j -= 1
    return prefix


def lexicon_phrases(caption: str, lexicon: Lexicon, *, keep_modifiers: bool, person_token: str,
                    person_category: str) -> list[str]:
    """Category phrases of a caption in caption order (may repeat; the caller dedupes and applies the stop-list).

    Args:
        caption: free text.
        lexicon: the word lists.
        keep_modifiers: keep colour/shade words and compound nouns in front of the head ("blue square").
        person_token: placeholder for anonymised names (CC12M's ``<PERSON>``).
        person_category: the category the placeholder stands for.
    """
    tokens = tokenize(caption, person_token, person_category)
    matches = _find_matches(tokens, lexicon)
    starts = {m.start for m in matches}
    by_end = {m.end: m for m in matches}
    phrases = []
    for match in matches:
        if not _is_head(match, tokens, starts, lexicon):
            continue
        prefix = _modifier_prefix(match, tokens, by_end, lexicon) if keep_modifiers else []
        phrases.append(" ".join([*prefix, match.canonical]))
    return phrases
