"""Constraints: which words may change and which candidate sentences are kept. Three hooks, each
optional on a constraint object:

    c.word_ok(word) -> bool                         may this word be edited at all (stop words)
    c.swap_ok(old, new) -> bool                     is this replacement allowed (embedding cosine)
    c.sentences_ok(adv: list[str], orig: list[str]) -> (M,) bool     checked before any query

The word budget (max fraction of words) and "no word edited twice" are enforced by the search
itself (``TextAttack.max_words`` and ``repeat=False``): they are part of every search state.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# A plain English stop-word list (function words, pronouns, auxiliaries, negation kept editable).
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor now of off on once only or other our ours ourselves out over own same she should so
some such than that the their theirs them themselves then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you your
yours yourself yourselves s t d ll m o re ve y
""".split())


class StopWords:
    """Never edit a stop word (compared lower-cased)."""

    def __init__(self, words: frozenset[str] | set[str] = STOP_WORDS) -> None:
        self.words = frozenset(w.lower() for w in words)

    def word_ok(self, word: str) -> bool:
        return word.lower() not in self.words


class EmbeddingCosine:
    """Keep a word swap only if the GloVe cosine of old and new word is >= ``min_cos`` (character
    edits, whose new word has no vector, are not checked)."""

    def __init__(self, min_cos: float = 0.5) -> None:
        from robustlab.attacks.text.transformations import EmbeddingSwap

        self.min_cos = float(min_cos)
        self._emb = EmbeddingSwap(k=1)

    def swap_ok(self, old: str, new: str) -> bool:
        if not new.isalpha() or not new.isascii():
            return True
        return self._emb.cosine(old, new) >= self.min_cos


class SentenceSimilarity:
    """Keep a candidate sentence only if ``similarity(adv, orig) >= floor``; ``similarity`` is a
    callable (list[str], list[str]) -> (M,) tensor, e.g. ``WordBudget(...).similarity`` (MiniLM) or
    ``robustlab.threats.text.glove_similarity``."""

    def __init__(self, similarity: Callable[[list[str], list[str]], Tensor], floor: float = 0.8) -> None:
        if not callable(similarity):
            raise TypeError(f"similarity: expected a callable, got {type(similarity).__name__}")
        if not 0 <= floor <= 1:
            raise ValueError(f"floor: expected a similarity in [0, 1], got {floor!r}")
        self.similarity, self.floor = similarity, float(floor)

    def sentences_ok(self, adv: list[str], orig: list[str]) -> Tensor:
        if not adv:
            return torch.zeros(0, dtype=torch.bool)
        return self.similarity(adv, orig).float().cpu() >= self.floor - 1e-6
