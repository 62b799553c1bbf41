"""WordBudget: the text threat. An adversarial sentence may change at most a fraction of the
original's words, by the allowed kinds of edit, and must stay at least ``sim`` similar to it.

    words:0.2,sim:0.8                     20% of the words, MiniLM cosine >= 0.8 (robustlab[text])
    words:0.2,sim:0.8,simby:glove         the same floor measured by mean GloVe vectors (no extra)
    words:0.1,edits:char                  character edits only, no similarity floor

Words are whitespace tokens. ``distance`` aligns the two token lists (difflib) and counts, per
original word, a change: a replaced or deleted word costs 1, each inserted word 1, and a word
re-spaced into several tokens ("idiot" -> "i d i o t") 1. It is divided by the original's word
count. An edit is a *char* edit when the new token, with homoglyphs mapped back to ASCII and
non-letters dropped, is within two character edits of the old one (or the same letters re-spaced);
otherwise a *word* edit (a swap for a synonym or neighbour).

This module imports nothing of robustlab's own outside threats/ (the similarity encoders are
imported on first use).
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from robustlab.threats.base import DIST_TOL

EDITS = ("all", "word", "char")
# Look-alike letters (Cyrillic, Greek, Latin extended) for homoglyph edits and their inverse.
HOMOGLYPHS = {"a": "\u0430", "c": "\u0441", "e": "\u0435", "i": "\u0456", "j": "\u0458", "o": "\u043e",
              "p": "\u0440", "s": "\u0455", "x": "\u0445", "y": "\u0443", "h": "\u04bb", "k": "\u03ba",
              "l": "\u04cf", "n": "\u0578", "d": "\u0501", "g": "\u0261", "b": "\u042c", "t": "\u0442",
              "u": "\u057d", "v": "\u03bd", "w": "\u051d"}
ASCII_OF = {v: k for k, v in HOMOGLYPHS.items()}


def letters(token: str) -> str:
    """Lower-cased alphanumerics of ``token`` with homoglyphs mapped back to ASCII."""
    return "".join(c for c in (ASCII_OF.get(ch, ch) for ch in token.lower()) if c.isalnum())


def char_distance(a: str, b: str, cap: int = 3) -> int:
    """Levenshtein distance of ``a`` and ``b`` (stops counting at ``cap``)."""
    if abs(len(a) - len(b)) >= cap:
        return cap
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return min(prev[-1], cap)


def changes(adv: str, orig: str) -> tuple[int, int, int]:
    """(word edits, char edits, original word count) between two sentences (see module doc)."""
    a, b = orig.split(), adv.split()
    word = char = 0
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        if op == "insert":
            word += j2 - j1
        elif op == "delete":
            word += i2 - i1
        elif letters("".join(b[j1:j2])) == letters("".join(a[i1:i2])):
            char += i2 - i1  # re-spacing, homoglyphs or punctuation inside the same letters
        elif i2 - i1 == j2 - j1:
            for old, new in zip(a[i1:i2], b[j1:j2]):
                if old == new:
                    continue
                if char_distance(letters(new), letters(old)) <= 2 and letters(old):
                    char += 1
                else:
                    word += 1
        else:
            word += max(i2 - i1, j2 - j1)
    return word, char, max(len(a), 1)


@lru_cache(maxsize=1)
def _glove_index() -> dict[str, int]:
    from robustlab.models.text import glove

    return {w: i for i, w in enumerate(glove()[0])}


def glove_similarity(a: list[str], b: list[str]) -> Tensor:
    """(N,) cosine of the mean GloVe vectors of paired sentences (unknown words count as zero)."""
    from robustlab.models.text import glove, tokenize

    words, vectors = glove()
    index = _glove_index()

    def mean(s: str) -> Tensor:
        rows = [index[t] for t in tokenize(s) if t in index]
        return vectors[rows].mean(0) if rows else torch.zeros(vectors.shape[1])

    ea, eb = torch.stack([mean(s) for s in a]), torch.stack([mean(s) for s in b])
    return torch.nn.functional.cosine_similarity(ea, eb, dim=1, eps=1e-8)


def minilm_similarity(a: list[str], b: list[str]) -> Tensor:
    """(N,) cosine of all-MiniLM-L6-v2 embeddings of paired sentences (needs robustlab[text])."""
    from robustlab.models.minilm import encoder

    return encoder().similarity(list(a), list(b))


SIMILARITIES: dict[str, Callable[[list[str], list[str]], Tensor]] = {"minilm": minilm_similarity,
                                                                      "glove": glove_similarity}


@dataclass(frozen=True)
class WordBudget:
    """At most ``words`` (a fraction in (0, 1]) of a sentence's words changed, by ``edits`` kinds
    ("all", "word" swaps only, "char" edits only), with similarity >= ``sim`` measured by
    ``simby`` ("minilm" or "glove"; ``sim`` 0 disables the floor)."""

    words: float = 0.2
    sim: float = 0.0
    edits: str = "all"
    simby: str = "minilm"

    def __post_init__(self) -> None:
        if not isinstance(self.words, (int, float)) or not 0 < self.words <= 1:
            raise ValueError(f"words: expected a fraction in (0, 1], got {self.words!r}")
        if not isinstance(self.sim, (int, float)) or not 0 <= self.sim <= 1:
            raise ValueError(f"sim: expected a similarity floor in [0, 1], got {self.sim!r}")
        if self.edits not in EDITS:
            raise ValueError(f"edits: expected one of {EDITS}, got {self.edits!r}")
        if self.simby not in SIMILARITIES:
            raise ValueError(f"simby: expected one of {sorted(SIMILARITIES)}, got {self.simby!r}")

    @classmethod
    def parse(cls, spec: str) -> "WordBudget":
        """``"words:0.2,sim:0.8[,edits:char][,simby:glove]"`` -> WordBudget."""
        kw: dict[str, object] = {}
        for part in spec.split(","):
            key, sep, value = part.partition(":")
            key = key.strip().lower()
            if not sep or key not in ("words", "sim", "edits", "simby"):
                raise ValueError(f"threat: expected words:F[,sim:F][,edits:all|word|char][,simby:minilm|glove], "
                                 f"got {spec!r}")
            kw[key] = float(value) if key in ("words", "sim") else value.strip().lower()
        if "words" not in kw:
            raise ValueError(f"threat: a text threat needs words:FRACTION, got {spec!r}")
        return cls(**kw)  # type: ignore[arg-type]

    def spec(self) -> str:
        s = f"words:{self.words:g}"
        if self.sim > 0:
            s += f",sim:{self.sim:g}"
        if self.edits != "all":
            s += f",edits:{self.edits}"
        if self.sim > 0 and self.simby != "minilm":
            s += f",simby:{self.simby}"
        return s

    def validate(self, x: object) -> None:
        if isinstance(x, str) or not isinstance(x, (list, tuple)) or not all(isinstance(s, str) for s in x):
            raise TypeError(f"x: a text threat ({self.spec()}) expects a list of strings, got {type(x).__name__}")
        if any(not s.split() for s in x):
            raise ValueError("x: every sentence must have at least one word")

    def budget(self, n_words: int) -> int:
        """The most words a sentence of ``n_words`` words may change."""
        return int(self.words * n_words + DIST_TOL)

    def distance(self, x_adv: list[str], x: list[str]) -> Tensor:
        """(N,) fraction of the original words changed (word and char edits together)."""
        self._check_pair(x_adv, x)
        return torch.tensor([(w + c) / n for w, c, n in (changes(a, o) for a, o in zip(x_adv, x))])

    def similarity(self, x_adv: list[str], x: list[str]) -> Tensor:
        """(N,) similarity of each adversarial sentence to its original (1 where they are equal)."""
        self._check_pair(x_adv, x)
        out = torch.ones(len(x))
        todo = [i for i, (a, o) in enumerate(zip(x_adv, x)) if a != o]
        if todo and self.sim > 0:
            out[todo] = SIMILARITIES[self.simby]([x_adv[i] for i in todo], [x[i] for i in todo]).float().cpu()
        return out

    def admits(self, x_adv: list[str], x: list[str]) -> Tensor:
        """(N,) bool: within the word budget, only allowed edit kinds, similarity >= ``sim``."""
        self._check_pair(x_adv, x)
        ok = []
        for a, o in zip(x_adv, x):
            w, c, n = changes(a, o)
            kinds = (self.edits != "word" or c == 0) and (self.edits != "char" or w == 0)
            ok.append(kinds and w + c <= self.budget(n))
        out = torch.tensor(ok, dtype=torch.bool)
        if self.sim > 0 and bool(out.any()):
            out &= self.similarity(x_adv, x) >= self.sim - 1e-6
        return out

    def _check_pair(self, x_adv: object, x: object) -> None:
        self.validate(x)
        if isinstance(x_adv, str) or not isinstance(x_adv, (list, tuple)) or len(x_adv) != len(x):  # type: ignore[arg-type]
            raise ValueError(f"x_adv: expected a list of {len(x)} strings (one per original), "  # type: ignore[arg-type]
                             f"got {type(x_adv).__name__}")
