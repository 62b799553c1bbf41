"""Named recipes: short compositions of goal, transformation, constraints and search.

    textfooler-like   GloVe neighbours (cos >= 0.6) + greedy by deletion importance, stop words,
                      embedding cosine; MiniLM/GloVe sentence floor from the threat
    pwws-like         WordNet synonyms + probability-weighted word saliency, stop words
    deepwordbug-like  character edits (swap, delete, insert, substitute) + greedy by "unk" importance
    filter-evasion    character edits incl. homoglyphs and spacing ("i d i o t", "st.upid") and
                      WordNet synonyms, greedy by "unk" importance, goal: the filter says benign (class 0)
    wordnet-greedy    WordNet synonyms + greedy by deletion importance, stop words (the recipe of
                      the TextAttack side-by-side)
    genetic-like      GloVe neighbours + Alzantot et al.'s genetic search

``recipe(name, threat)`` builds one; the threat (a ``WordBudget``) sets the word budget, the
similarity floor and the edit kinds. Passing ``max_queries`` etc. overrides the defaults.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from robustlab.attacks.text.attack import Targeted, TextAttack, Untargeted
from robustlab.attacks.text.constraints import EmbeddingCosine, SentenceSimilarity, StopWords
from robustlab.attacks.text.search import PWWS, Genetic, GreedyWIR
from robustlab.attacks.text.transformations import CharEdits, Compose, EmbeddingSwap, WordNetSwap
from robustlab.threats.text import WordBudget


def _common(threat: WordBudget | None, kind: str) -> tuple[WordBudget, list[object]]:
    threat = threat if threat is not None else WordBudget(words=0.2)
    if threat.edits not in ("all", kind):
        raise ValueError(f"threat: {threat.spec()} forbids the {kind} edits this recipe makes")
    cons: list[object] = [StopWords()]
    if threat.sim > 0:
        cons.append(SentenceSimilarity(threat.similarity, threat.sim))
    return threat, cons


def textfooler_like(threat: WordBudget | None = None, **kw: Any) -> TextAttack:
    threat, cons = _common(threat, "word")
    return TextAttack(Untargeted(), EmbeddingSwap(k=30, min_cos=0.6), [*cons, EmbeddingCosine(0.6)],
                      GreedyWIR("delete"), threat=threat, name="textfooler-like", **kw)


def pwws_like(threat: WordBudget | None = None, **kw: Any) -> TextAttack:
    threat, cons = _common(threat, "word")
    return TextAttack(Untargeted(), WordNetSwap(), cons, PWWS(), threat=threat, name="pwws-like", **kw)


def wordnet_greedy(threat: WordBudget | None = None, **kw: Any) -> TextAttack:
    threat, cons = _common(threat, "word")
    return TextAttack(Untargeted(), WordNetSwap(), cons, GreedyWIR("delete"), threat=threat, name="wordnet-greedy",
                      **kw)


def deepwordbug_like(threat: WordBudget | None = None, **kw: Any) -> TextAttack:
    threat, cons = _common(threat, "char")
    edits = CharEdits(kinds=("swap", "delete", "insert", "substitute"))
    return TextAttack(Untargeted(), edits, cons, GreedyWIR("unk"), threat=threat, name="deepwordbug-like", **kw)


def genetic_like(threat: WordBudget | None = None, **kw: Any) -> TextAttack:
    threat, cons = _common(threat, "word")
    return TextAttack(Untargeted(), EmbeddingSwap(k=8, min_cos=0.6), [*cons, EmbeddingCosine(0.6)],
                      Genetic(population=12, generations=8), threat=threat, name="genetic-like", **kw)


def filter_evasion(threat: WordBudget | None = None, benign: int = 0, **kw: Any) -> TextAttack:
    threat = threat if threat is not None else WordBudget(words=0.2)
    parts: list[object] = []
    if threat.edits in ("all", "char"):
        parts.append(CharEdits())
    if threat.edits in ("all", "word"):
        parts.append(WordNetSwap())
    cons: list[object] = [SentenceSimilarity(threat.similarity, threat.sim)] if threat.sim > 0 else []
    return TextAttack(Targeted(benign), Compose(*parts), cons, GreedyWIR("unk"), threat=threat,
                      name="filter-evasion", **kw)


RECIPES: dict[str, Callable[..., TextAttack]] = {
    "textfooler-like": textfooler_like, "pwws-like": pwws_like, "deepwordbug-like": deepwordbug_like,
    "filter-evasion": filter_evasion, "wordnet-greedy": wordnet_greedy, "genetic-like": genetic_like,
}


def recipe(name: str, threat: WordBudget | str | None = None, **kw: Any) -> TextAttack:
    """The attack called ``name`` (see RECIPES) under ``threat`` (a WordBudget or its spec)."""
    if name not in RECIPES:
        raise ValueError(f"name: unknown text attack {name!r}; expected one of {sorted(RECIPES)}")
    if isinstance(threat, str):
        threat = WordBudget.parse(threat)
    if threat is not None and not isinstance(threat, WordBudget):
        raise TypeError(f"threat: expected a WordBudget or a 'words:...' spec, got {type(threat).__name__}")
    return RECIPES[name](threat, **kw)
