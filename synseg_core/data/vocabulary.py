"""The offline lexicon behind category extraction: visual nouns with aliases, colour modifiers, the stop-list.

The word lists live in ``synseg_core/resources/vocabulary/`` (one entry a line, ``#`` comments). Nouns are
matched on their surface form and on the lemma of their last word, so "dogs" finds "dog" and "coffee tables"
finds "coffee table"; plural-only entries ("shorts", "scissors") match on their surface form only, so that the
adjective "short" does not turn into the garment.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import lemminflect

VOCABULARY_DIR = Path(__file__).resolve().parent.parent / "resources" / "vocabulary"
NOUNS_FILE = VOCABULARY_DIR / "visual_nouns.txt"
MODIFIERS_FILE = VOCABULARY_DIR / "modifiers.txt"
STOP_WORDS_FILE = VOCABULARY_DIR / "stop_words.txt"
COMMENT = "#"
ALIAS_SEPARATOR = ":"


@functools.lru_cache(maxsize=1 << 16)
def noun_lemmas(word: str) -> tuple[str, ...]:
    """Possible noun lemmas of a lower-case word, most likely first ("leaves" -> ("leave", "leaf")).

    A word the dictionary knows only as another part of speech keeps its surface form ("parked" stays
    "parked", not "park"); out-of-dictionary words go through lemminflect's rules.
    """
    known = lemminflect.getAllLemmas(word)
    if "NOUN" in known:
        return tuple(known["NOUN"])
    if known:
        return (word,)
    return tuple(lemminflect.getLemma(word, upos="NOUN", lemmatize_oov=True)) or (word,)


def read_word_list(path: str | Path) -> list[tuple[int, str]]:
    """Non-empty, non-comment lines of a word-list file as (line number, lower-case text).

    Raises:
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file not found: {path}")
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = " ".join(line.split(COMMENT, 1)[0].lower().split())
        if text:
            lines.append((number, text))
    return lines


def _match_keys(phrase: str) -> list[str]:
    """Keys a vocabulary phrase is found under: its surface form, plus lemma forms when the last word is singular."""
    *rest, last = phrase.split(" ")
    keys = [phrase]
    if last in noun_lemmas(last):  # a singular entry: "dog" also answers to the lemma of "dogs"
        keys += [" ".join([*rest, lemma]) for lemma in noun_lemmas(last) if lemma != last]
    return keys


@dataclass(frozen=True)
class Lexicon:
    """Word lists for the lexicon matcher.

    Attributes:
        nouns: match key (a surface or lemma form) -> canonical category name.
        max_words: the longest noun entry, in words (bounds the n-gram search).
        modifiers: colour and shade words.
        stop_words: head lemmas that are never categories.
    """

    nouns: Mapping[str, str]
    max_words: int
    modifiers: frozenset[str]
    stop_words: frozenset[str]

    def lookup(self, words: Sequence[str]) -> str | None:
        """Canonical category of a word sequence, trying the surface form first, then lemmas of the last word."""
        surface = " ".join(words)
        if surface in self.nouns:
            return self.nouns[surface]
        for lemma in noun_lemmas(words[-1]):
            canonical = self.nouns.get(" ".join([*words[:-1], lemma]))
            if canonical is not None:
                return canonical
        return None

    def is_stop_phrase(self, phrase: str) -> bool:
        """True when the phrase names a stop-listed thing.

        A phrase ending in a vocabulary entry is judged by that entry ("parking meter" is a thing although
        "meter" alone is a unit; "blue background" is not); otherwise by its head (last word, any noun lemma).
        """
        words = phrase.split(" ")
        for start in range(len(words)):  # longest known ending first
            canonical = self.lookup(words[start:])
            if canonical is not None:
                return canonical in self.stop_words
        return words[-1] in self.stop_words or any(lemma in self.stop_words for lemma in noun_lemmas(words[-1]))


def _add_nouns(table: dict[str, str], origin: dict[str, str], path: Path) -> None:
    """Add one noun file's entries to `table`; a key claimed by two canonical names is an error."""
    for number, line in read_word_list(path):
        canonical, _, aliases = line.partition(ALIAS_SEPARATOR)
        canonical = canonical.strip()
        names = [canonical] + [a.strip() for a in aliases.split(",") if a.strip()]
        for name in names:
            for key in _match_keys(name):
                if table.get(key, canonical) != canonical:
                    raise ValueError(f"{path}:{number}: {key!r} would mean {canonical!r}, but {origin[key]} "
                                     f"already maps it to {table[key]!r}; keep one")
                table[key] = canonical
                origin.setdefault(key, f"{path}:{number}")


@functools.lru_cache(maxsize=8)
def load_lexicon(extra_vocabulary: tuple[str, ...] = (), extra_stop_words: tuple[str, ...] = ()) -> Lexicon:
    """Load the packaged word lists plus optional extra noun files and stop words (cached).

    Args:
        extra_vocabulary: paths of further noun files in the visual_nouns.txt format.
        extra_stop_words: further head lemmas to drop.

    Raises:
        FileNotFoundError: an extra vocabulary file does not exist.
        ValueError: two entries claim the same word for different categories.
    """
    table: dict[str, str] = {}
    origin: dict[str, str] = {}
    for path in (NOUNS_FILE, *map(Path, extra_vocabulary)):
        _add_nouns(table, origin, path)
    stop = {text for _, text in read_word_list(STOP_WORDS_FILE)} | {w.lower() for w in extra_stop_words}
    return Lexicon(
        nouns=table,
        max_words=max(len(key.split(" ")) for key in table),
        modifiers=frozenset(text for _, text in read_word_list(MODIFIERS_FILE)),
        stop_words=frozenset(stop),
    )
