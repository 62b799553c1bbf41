"""A spelling-normalizing front end for text classifiers (Pruthi et al. 2019's idea of a word
recognizer before the model, in a simple dictionary form), and the wrapper that deploys it.

``Normalizer()(text)``: homoglyphs back to ASCII, letters spaced out ("i d i o t") joined,
punctuation inside a word ("st.upid") dropped, and each out-of-vocabulary word replaced by the
most frequent vocabulary word within one character edit (delete, transpose, substitute, insert).
The vocabulary is the shipped GloVe vocabulary; frequency is the word's count in the training
splits of the shipped corpora (MR and SMS), so the front end uses no test data.

``Normalized(model)`` is the deployed model: ``forward(texts) = model(normalize(texts))``; its
``naive_view()`` is the bare model (what a non-adaptive attacker sees) and an adaptive attacker
queries the whole pipeline (text attacks are black-box: they query ``Normalized`` itself).
"""
from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

from torch import Tensor, nn

from robustlab.threats.text import ASCII_OF

_SPACED = re.compile(r"(?<!\S)(?:[A-Za-z] ){2,}[A-Za-z](?!\S)")
_INNER = re.compile(r"(?<=[A-Za-z])[.\-_*'`~|]+(?=[A-Za-z])")
_WORD = re.compile(r"[A-Za-z]+")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@lru_cache(maxsize=1)
def _lexicon() -> tuple[frozenset[str], Counter]:
    from robustlab.data.textfiles import corpus
    from robustlab.models.text import glove, tokenize

    words = frozenset(glove()[0])
    counts: Counter = Counter()
    for name in ("mr", "sms"):
        for t in corpus(name)["train"]["text"]:
            counts.update(tokenize(t))
    return words, counts


def _edits1(word: str) -> set[str]:
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    return ({a + b[1:] for a, b in splits if b} | {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
            | {a + c + b[1:] for a, b in splits if b for c in LETTERS} | {a + c + b for a, b in splits for c in LETTERS})


class Normalizer:
    """Text -> normalized text (see module doc). ``min_len``: words shorter are left alone."""

    def __init__(self, min_len: int = 3) -> None:
        self.min_len = int(min_len)
        self._cache: dict[str, str] = {}

    def correct(self, word: str) -> str:
        """The word itself if known (or short), else its most frequent known neighbour at one edit."""
        low = word.lower()
        vocab, counts = _lexicon()
        if len(low) < self.min_len or low in vocab:
            return word
        if low not in self._cache:
            near = [w for w in _edits1(low) if w in vocab]
            self._cache[low] = max(near, key=lambda w: (counts.get(w, 0), w)) if near else low
        fixed = self._cache[low]
        return fixed.upper() if word.isupper() and len(word) > 1 else (fixed.capitalize() if word[:1].isupper() else fixed)

    def __call__(self, text: str) -> str:
        text = "".join(ASCII_OF.get(ch, ch) for ch in text)
        text = _SPACED.sub(lambda m: m.group(0).replace(" ", ""), text)
        text = _INNER.sub("", text)
        return _WORD.sub(lambda m: self.correct(m.group(0)), text)


class Normalized(nn.Module):
    """A text model behind the ``Normalizer``: list of N strings -> the model's (N, K) logits."""

    def __init__(self, model: nn.Module, normalizer: Normalizer | None = None) -> None:
        super().__init__()
        self.model = model
        self.normalizer = normalizer or Normalizer()

    def forward(self, texts: list[str]) -> Tensor:
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts: expected a list of strings, got {type(texts).__name__}")
        return self.model([self.normalizer(t) for t in texts])

    def naive_view(self) -> nn.Module:
        """The bare model: what an attacker who ignores the front end attacks."""
        return self.model

    def spec(self) -> str:
        return f"normalizer(min_len={self.normalizer.min_len})"


def load_normalized_wordcnn(entry: object, state: dict[str, Tensor] | None) -> Normalized:
    """Zoo loader for ``<base>-norm``: the shipped ``<base>`` word-CNN behind the normalizer."""
    from robustlab.models.loading import load

    return Normalized(load(entry.name.removesuffix("-norm"))).eval()  # type: ignore[attr-defined]
