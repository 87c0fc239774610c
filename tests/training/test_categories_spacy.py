"""Category extraction through spaCy noun chunks (real spaCy where installed; a hand-written parse otherwise)."""
from dataclasses import dataclass, field

import pytest

from synseg_core.data.categories import CategoryConfig, CategoryExtractor
from synseg_core.data.spacy_matcher import spacy_phrases


@dataclass
class _Tok:
    i: int
    text: str
    lemma_: str
    pos_: str
    dep_: str


@dataclass
class _Chunk:
    tokens: list
    root: _Tok

    def __iter__(self):
        return iter(self.tokens)


@dataclass
class _Doc:
    tokens: list
    noun_chunks: list = field(default_factory=list)

    def __iter__(self):
        return iter(self.tokens)


def _parsed(rows, chunks):
    """A parse as spaCy's en_core_web_sm gives it: rows of (text, lemma, pos, dep); chunks as (start, end, root)."""
    toks = [_Tok(i, *row) for i, row in enumerate(rows)]
    return _Doc(toks, [_Chunk(toks[a:b], toks[r]) for a, b, r in chunks])


# "two dogs playing in the snow next to a red coffee table and grass"
DOC_ROWS = [("two", "two", "NUM", "nummod"), ("dogs", "dog", "NOUN", "nsubj"), ("playing", "play", "VERB", "ROOT"),
            ("in", "in", "ADP", "prep"), ("the", "the", "DET", "det"), ("snow", "snow", "NOUN", "pobj"),
            ("next", "next", "ADV", "advmod"), ("to", "to", "ADP", "prep"), ("a", "a", "DET", "det"),
            ("red", "red", "ADJ", "amod"), ("coffee", "coffee", "NOUN", "compound"),
            ("table", "table", "NOUN", "pobj"), ("and", "and", "CCONJ", "cc"), ("it", "it", "PRON", "conj"),
            ("grass", "grass", "NOUN", "dep")]
DOC_CHUNKS = [(0, 2, 1), (4, 6, 5), (8, 12, 11), (13, 14, 13)]  # "grass" is a noun outside every chunk


def test_spacy_phrases_strip_numbers_and_determiners_and_keep_compounds():
    doc = _parsed(DOC_ROWS, DOC_CHUNKS)
    assert spacy_phrases(doc, keep_modifiers=False) == ["dog", "snow", "coffee table", "grass"]
    assert spacy_phrases(doc, keep_modifiers=True) == ["dog", "snow", "red coffee table", "grass"]


REAL_CAPTIONS = [
    ("two dogs playing in the snow next to a red car", {"dog", "snow", "car"}),
    ("<PERSON> walks her dog in the park", {"person", "dog", "park"}),
    ("a pair of shoes in front of the wall", {"shoe", "wall"}),
]


@pytest.mark.parametrize("caption, expected", REAL_CAPTIONS)
def test_real_spacy_noun_chunks(caption, expected):
    pytest.importorskip("spacy", reason="spaCy is not installed here; the lexicon matcher covers this machine")
    try:
        extractor = CategoryExtractor(CategoryConfig(backend="spacy", max_categories=8, selection="first"))
    except ImportError as exc:
        pytest.skip(f"spaCy is installed but its English model is not: {exc}")
    found = extractor(caption)
    assert set(found) == expected
    assert not {"pair", "front"} & set(found)
