"""Caption -> category names (docs/method.md §7): the one extractor used by precomputation and datasets.

``CategoryExtractor(config)(caption)`` returns at most K categories in caption order; an empty list means the
image has no usable category, and callers drop it and count it. Two backends give candidate phrases:
spaCy noun chunks when spaCy and its English model are installed, otherwise an offline lexicon matcher
(lemminflect lemmas + the project's visual-noun list). Both apply the same stop-list, person mapping,
de-duplication and K limit.
"""
from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from typing import Any, Literal, Sequence, get_args

from ..config import ConfigError
from .lexicon_matcher import lexicon_phrases
from .spacy_matcher import load_spacy, spacy_available, spacy_phrases
from .vocabulary import Lexicon, load_lexicon

log = logging.getLogger(__name__)

Backend = Literal["auto", "spacy", "lexicon"]
Selection = Literal["first", "random"]


@dataclass
class CategoryConfig:
    """How categories are pulled out of captions.

    Attributes:
        max_categories: K, the most categories kept per image (docs/method.md §7: 4).
        selection: with more than K candidates, keep the first K ("first") or a random K in caption order
            ("random", seeded by `seed` and the sample key, so it is reproducible and can vary per epoch).
        keep_modifiers: keep adjectives/colours in front of the head ("two blue squares" -> "blue square");
            off, colours are dropped ("a red car" -> "car"). The synthetic task needs it on.
        backend: "spacy" (error if not installed), "lexicon", or "auto" (spaCy when it loads, else lexicon).
        spacy_model: the spaCy pipeline to load.
        person_token: placeholder of anonymised names in the captions (CC12M uses ``<PERSON>``).
        person_category: the category the placeholder becomes.
        extra_vocabulary: further noun files (visual_nouns.txt format) for the lexicon matcher.
        extra_stop_words: further head words that are never categories.
        seed: seed of the random selection.
    """

    max_categories: int = 4
    selection: Selection = "random"
    keep_modifiers: bool = False
    backend: Backend = "auto"
    spacy_model: str = "en_core_web_sm"
    person_token: str = "<PERSON>"
    person_category: str = "person"
    extra_vocabulary: tuple[str, ...] = ()
    extra_stop_words: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_categories < 1:
            raise ConfigError(f"categories.max_categories must be at least 1, got {self.max_categories}")
        for name, value, allowed in (("backend", self.backend, Backend), ("selection", self.selection, Selection)):
            if value not in get_args(allowed):
                raise ConfigError(f"categories.{name}: {value!r} is not one of {list(get_args(allowed))}")
        if not self.person_token or not self.person_category.strip():
            raise ConfigError("categories.person_token and categories.person_category must be non-empty, got "
                              f"{self.person_token!r} and {self.person_category!r}")


class CategoryExtractor:
    """Extracts category names from captions; picklable, so DataLoader workers can share it.

    Args:
        config: extraction settings (defaults: K = 4, random selection, auto backend).

    Raises:
        ImportError: backend "spacy" without spaCy or its model.
        FileNotFoundError / ValueError: a bad extra vocabulary file.
    """

    def __init__(self, config: CategoryConfig | None = None) -> None:
        self.config = config or CategoryConfig()
        self.lexicon: Lexicon = load_lexicon(tuple(self.config.extra_vocabulary),
                                             tuple(self.config.extra_stop_words))
        self.backend: Literal["spacy", "lexicon"] = self._resolve_backend()
        self._nlp: Any = None

    def _resolve_backend(self) -> Literal["spacy", "lexicon"]:
        wanted = self.config.backend
        if wanted == "lexicon" or (wanted == "auto" and not spacy_available()):
            return "lexicon"
        try:
            self._nlp = load_spacy(self.config.spacy_model)
        except ImportError as exc:
            if wanted == "spacy":
                raise
            log.warning("spaCy is installed but unusable, using the lexicon matcher: %s", exc)
            return "lexicon"
        return "spacy"

    def __getstate__(self) -> dict:
        # The spaCy pipeline is large; each worker process loads its own copy on first use.
        return {**self.__dict__, "_nlp": None}

    def _phrases(self, caption: str) -> list[str]:
        cfg = self.config
        if self.backend == "lexicon":
            return lexicon_phrases(caption, self.lexicon, keep_modifiers=cfg.keep_modifiers,
                                   person_token=cfg.person_token, person_category=cfg.person_category)
        if self._nlp is None:
            self._nlp = load_spacy(cfg.spacy_model)
        text = re.sub(re.escape(cfg.person_token), cfg.person_category, caption, flags=re.IGNORECASE)
        return spacy_phrases(self._nlp(text), cfg.keep_modifiers)

    def candidates(self, caption: str) -> list[str]:
        """Every category of a caption, in caption order, de-duplicated, stop-listed (no K limit).

        Args:
            caption: free text; non-strings are an error.

        Raises:
            TypeError: `caption` is not a string.
        """
        if not isinstance(caption, str):
            raise TypeError(f"caption must be a string, got {type(caption).__name__}: {caption!r}")
        phrases = [p for p in self._phrases(caption) if p and not self.lexicon.is_stop_phrase(p)]
        return list(dict.fromkeys(phrases))

    def select(self, categories: Sequence[str], key: str = "") -> list[str]:
        """At most K of the given categories (de-duplicated), in their original order.

        Args:
            categories: candidate names, e.g. precomputed ones.
            key: what seeds the random selection together with `config.seed` (a sample key, plus the epoch to
                vary it per epoch).
        """
        unique = list(dict.fromkeys(categories))
        k = self.config.max_categories
        if len(unique) <= k:
            return unique
        if self.config.selection == "first":
            return unique[:k]
        chosen = sorted(random.Random(f"{self.config.seed}:{key}").sample(range(len(unique)), k))
        return [unique[i] for i in chosen]

    def __call__(self, caption: str, key: str = "") -> list[str]:
        """At most K categories of a caption; empty when it names nothing usable (drop and count the image)."""
        return self.select(self.candidates(caption), key)
