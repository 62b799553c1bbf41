"""Transformations: what one word may become. Each is a callable ``t(word) -> list[str]`` of
replacement words (the word's letters only: the search keeps surrounding punctuation), with a
``kind`` ("word" swaps, "char" edits) the threat's edit kinds are checked against.

- ``WordNetSwap``: single-word synonyms over all WordNet 3.0 senses (the shipped table,
  ``data/files/wordnet_synonyms.json.gz``), as PWWS and TextAttack's WordNet swap use.
- ``EmbeddingSwap``: the ``k`` nearest GloVe 50d neighbours with cosine >= ``min_cos``
  (TextFooler's idea; counter-fitted vectors are not available offline, so plain GloVe).
- ``CharEdits``: DeepWordBug's swap / delete / insert / substitute, homoglyphs (Cyrillic
  look-alikes) and Hosseini et al.'s spacing ("i d i o t", "st.upid"), one seeded edit per kind.
"""
from __future__ import annotations

import gzip
import json
import random
import zlib
from functools import lru_cache
from importlib.resources import files

import torch

from robustlab.threats.text import HOMOGLYPHS

CHAR_KINDS = ("swap", "delete", "insert", "substitute", "homoglyph", "space", "dot")


def _case_like(template: str, word: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    return word[:1].upper() + word[1:] if template[:1].isupper() else word


@lru_cache(maxsize=1)
def wordnet_table() -> dict[str, list[str]]:
    """word -> WordNet 3.0 single-word synonyms (all senses), as converted by scripts/convert_text.py."""
    with (files("robustlab.data") / "files" / "wordnet_synonyms.json.gz").open("rb") as f:
        return json.loads(gzip.decompress(f.read()))["synonyms"]  # type: ignore[no-any-return]


class WordNetSwap:
    """Synonyms from WordNet 3.0 (at most ``max_candidates``, in WordNet's sense order)."""

    kind = "word"

    def __init__(self, max_candidates: int | None = None) -> None:
        if max_candidates is not None and (not isinstance(max_candidates, int) or max_candidates < 1):
            raise ValueError(f"max_candidates: expected a positive int or None, got {max_candidates!r}")
        self.max_candidates = max_candidates

    def __call__(self, word: str) -> list[str]:
        syn = wordnet_table().get(word.lower(), [])
        return [_case_like(word, s) for s in syn[: self.max_candidates]]


class EmbeddingSwap:
    """The ``k`` nearest GloVe neighbours of a word with cosine >= ``min_cos`` (alphabetic only)."""

    kind = "word"

    def __init__(self, k: int = 20, min_cos: float = 0.6) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive int, got {k!r}")
        if not -1 <= min_cos <= 1:
            raise ValueError(f"min_cos: expected a cosine in [-1, 1], got {min_cos!r}")
        self.k, self.min_cos = k, float(min_cos)
        self._cache: dict[str, list[str]] = {}

    @staticmethod
    @lru_cache(maxsize=1)
    def _table() -> tuple[list[str], dict[str, int], torch.Tensor]:
        from robustlab.models.text import glove

        words, vectors = glove()
        return words, {w: i for i, w in enumerate(words)}, torch.nn.functional.normalize(vectors, dim=1)

    def cosine(self, a: str, b: str) -> float:
        """Cosine of two words' GloVe vectors (0 when either is unknown)."""
        _, index, unit = self._table()
        ia, ib = index.get(a.lower()), index.get(b.lower())
        return 0.0 if ia is None or ib is None else float(unit[ia] @ unit[ib])

    def __call__(self, word: str) -> list[str]:
        key = word.lower()
        if key not in self._cache:
            words, index, unit = self._table()
            out: list[str] = []
            if key in index:
                cos = unit @ unit[index[key]]
                top = torch.topk(cos, min(len(words), 4 * self.k + 1))
                for c, j in zip(top.values.tolist(), top.indices.tolist()):
                    w = words[j]
                    if c < self.min_cos or len(out) == self.k:
                        break
                    if w != key and w.isalpha():
                        out.append(w)
            self._cache[key] = out
        return [_case_like(word, w) for w in self._cache[key]]


class CharEdits:
    """One seeded character edit of each kind in ``kinds`` (see CHAR_KINDS) for words of at least
    ``min_len`` letters. The same word always gets the same edits (seeded by the word)."""

    kind = "char"

    def __init__(self, kinds: tuple[str, ...] = CHAR_KINDS, min_len: int = 3, seed: int = 0) -> None:
        bad = [k for k in kinds if k not in CHAR_KINDS]
        if bad or not kinds:
            raise ValueError(f"kinds: expected a non-empty subset of {CHAR_KINDS}, got {kinds!r}")
        self.kinds, self.min_len, self.seed = tuple(kinds), int(min_len), int(seed)

    def __call__(self, word: str) -> list[str]:
        if len(word) < self.min_len or not word.isalpha():
            return []
        rng = random.Random(zlib.crc32(word.encode("utf-8")) ^ self.seed)
        n, out = len(word), []
        for kind in self.kinds:
            i = rng.randrange(1, n - 1) if n > 2 else 0
            if kind == "swap":
                new = word[:i] + word[i + 1] + word[i] + word[i + 2:]
            elif kind == "delete":
                new = word[:i] + word[i + 1:]
            elif kind == "insert":
                new = word[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word[i:]
            elif kind == "substitute":
                new = word[:i] + rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != word[i]]) + word[i + 1:]
            elif kind == "homoglyph":
                spots = [j for j, c in enumerate(word) if c.lower() in HOMOGLYPHS]
                if not spots:
                    continue
                j = rng.choice(spots)
                new = word[:j] + HOMOGLYPHS[word[j].lower()] + word[j + 1:]
            elif kind == "space":
                new = " ".join(word)
            else:  # dot
                new = word[:i] + "." + word[i:]
            if new != word and new not in out:
                out.append(new)
        return out


class Compose:
    """The union of several transformations' candidates (kind "word" if any is a swap, else "char")."""

    def __init__(self, *transformations: object) -> None:
        if not transformations:
            raise ValueError("transformations: expected at least one")
        self.parts = transformations
        self.kind = "word" if any(getattr(t, "kind", "word") == "word" for t in transformations) else "char"

    def __call__(self, word: str) -> list[str]:
        return list(dict.fromkeys(c for t in self.parts for c in t(word)))  # type: ignore[operator]
