"""A text attack is a composition (TextAttack's decomposition, our own code): a goal, a
transformation, constraints and a search. ``TextAttack`` holds them and runs the search on all
sentences at once: each search step gathers every active sentence's candidates into one model
batch, and queries are counted per sentence against ``max_queries``.

    attack = TextAttack(Untargeted(), WordNetSwap(), [StopWords()], GreedyWIR(), max_words=0.2)
    res = attack(model, texts, y)      # res.x_adv: list[str]; success, distance, queries: (N,)
"""
from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from robustlab.attacks.losses import is_success, rejects
from robustlab.results import AttackResult
from robustlab.threats.text import WordBudget

_SPLIT = re.compile(r"^(\W*)(.*?)(\W*)$", re.S)


class Untargeted:
    """Succeed when the prediction leaves the true class (and "reject", for a rejecting model);
    score: 1 - p(true) (- p(reject))."""

    def success(self, logits: Tensor, y: Tensor, reject: bool) -> Tensor:
        return is_success(logits, y, None, reject)

    def score(self, logits: Tensor, y: Tensor, reject: bool) -> Tensor:
        p = logits.softmax(1)
        kept = p.gather(1, y[:, None])[:, 0] + (p[:, -1] if reject else 0)
        return 1 - kept


class Targeted:
    """Succeed when the model predicts ``target`` (a fixed class; None: the ``target`` tensor
    passed to the attack); score: p(target). ``Targeted(0)`` on a filter whose class 0 is benign
    is the goal "make the filter say benign"."""

    def __init__(self, target: int | None = None) -> None:
        if target is not None and (not isinstance(target, int) or target < 0):
            raise ValueError(f"target: expected a class index >= 0 or None, got {target!r}")
        self.target = target

    def success(self, logits: Tensor, t: Tensor, reject: bool) -> Tensor:
        return is_success(logits, t, t, reject)

    def score(self, logits: Tensor, t: Tensor, reject: bool) -> Tensor:
        return logits.softmax(1).gather(1, t[:, None])[:, 0]


@dataclass
class State:
    """One sentence's search state: its tokens, which positions changed, score, queries."""

    orig: str
    tokens: list[str]
    changed: frozenset[int] = frozenset()
    score: float = 0.0
    success: bool = False
    budget: int = 0
    queries: int = 0
    done: bool = False
    extra: dict = field(default_factory=dict)

    def text(self) -> str:
        return self.orig if not self.changed else " ".join(self.tokens)


class TextAttack:
    """Goal + transformation + constraints + search, batched over sentences.

    Args:
        goal: ``Untargeted()`` or ``Targeted(c)``.
        transformation: callable word -> replacement words, with a ``kind`` ("word"/"char").
        constraints: objects with any of ``word_ok``, ``swap_ok``, ``sentences_ok``.
        search: ``GreedyWIR``, ``Beam``, ``PWWS`` or ``Genetic`` (robustlab.attacks.text.search).
        max_words: fraction of a sentence's words that may change (floor of fraction x words).
        max_queries: model queries allowed per sentence (None: unbounded).
        batch_size: sentences per model call.
        threat: a ``WordBudget``; when given, ``max_words`` comes from it and every returned
            sentence is checked with ``threat.admits`` (one that is not falls back to the original).
        name: shown in tables.
    """

    def __init__(self, goal: object, transformation: object, constraints: Sequence[object], search: object,
                 max_words: float = 0.2, max_queries: int | None = None, batch_size: int = 256,
                 threat: WordBudget | None = None, name: str = "text-attack") -> None:
        if not callable(transformation):
            raise TypeError(f"transformation: expected a callable word -> list[str], got {type(transformation).__name__}")
        if not callable(getattr(search, "run", None)):
            raise TypeError(f"search: expected a search object with run(), got {type(search).__name__}")
        if threat is not None and not isinstance(threat, WordBudget):
            raise TypeError(f"threat: expected a WordBudget, got {type(threat).__name__}")
        max_words = threat.words if threat is not None else max_words
        if not 0 < max_words <= 1:
            raise ValueError(f"max_words: expected a fraction in (0, 1], got {max_words!r}")
        if max_queries is not None and (not isinstance(max_queries, int) or max_queries < 1):
            raise ValueError(f"max_queries: expected a positive int or None, got {max_queries!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.goal, self.transformation, self.search = goal, transformation, search
        self.constraints = list(constraints)
        self.max_words, self.max_queries, self.batch_size = float(max_words), max_queries, batch_size
        self.threat, self.name = threat, name
        self._word_ok = [c.word_ok for c in self.constraints if hasattr(c, "word_ok")]
        self._swap_ok = [c.swap_ok for c in self.constraints if hasattr(c, "swap_ok")]
        self._sent_ok = [c.sentences_ok for c in self.constraints if hasattr(c, "sentences_ok")]

    # ---- the pieces a search uses -------------------------------------------------------
    def editable(self, state: State, pos: int) -> bool:
        """May position ``pos`` still be edited (not yet changed, budget left, word allowed)?"""
        if pos in state.changed or len(state.changed) >= state.budget:
            return False
        core = _SPLIT.match(state.tokens[pos]).group(2)  # type: ignore[union-attr]
        return bool(core) and all(ok(core) for ok in self._word_ok)

    def replacements(self, state: State, pos: int) -> list[str]:
        """Tokens that may replace position ``pos`` (transformation + word-level constraints)."""
        pre, core, post = _SPLIT.match(state.tokens[pos]).groups()  # type: ignore[union-attr]
        orig_core = _SPLIT.match(state.orig.split()[pos]).group(2)  # type: ignore[union-attr]
        cands = [c for c in self.transformation(core) if c != core]  # type: ignore[operator]
        cands = [c for c in cands if all(ok(orig_core, c) for ok in self._swap_ok)]
        return [pre + c + post for c in cands]

    def keep(self, states: list[State], owners: list[int], texts: list[str]) -> list[bool]:
        """Sentence-level constraints on candidate sentences (no model query spent)."""
        mask = torch.ones(len(texts), dtype=torch.bool)
        for ok in self._sent_ok:
            if mask.any():
                idx = mask.nonzero()[:, 0].tolist()
                mask[idx] = ok([texts[i] for i in idx], [states[owners[i]].orig for i in idx])
        return mask.tolist()

    def query(self, states: list[State], owners: list[int], texts: list[str]) -> tuple[list[float], list[bool]]:
        """Scores and success of candidate ``texts`` (owner: index of the sentence each belongs
        to), counted per owner. Candidates past an owner's query budget are dropped first by
        ``trim``; this spends exactly one query per text."""
        scores = [0.0] * len(texts)
        success = [False] * len(texts)
        order = sorted(range(len(texts)), key=lambda k: len(texts[k]))  # similar lengths batch together
        for i in range(0, len(order), self.batch_size):
            idx = order[i: i + self.batch_size]
            with torch.no_grad():
                logits = self._model([texts[k] for k in idx]).float().cpu()
            ref = self._ref[[owners[k] for k in idx]]
            sc = self.goal.score(logits, ref, self._reject).tolist()  # type: ignore[attr-defined]
            ok = self.goal.success(logits, ref, self._reject).tolist()  # type: ignore[attr-defined]
            for j, k in enumerate(idx):
                scores[k], success[k] = sc[j], ok[j]
        self._forward += len(texts)
        for o in owners:
            states[o].queries += 1
        return scores, success

    def trim(self, states: list[State], owners: list[int], texts: list[str]) -> tuple[list[int], list[str]]:
        """Drop candidates past each owner's remaining query budget (and mark those owners done)."""
        if self.max_queries is None:
            return owners, texts
        left = {o: self.max_queries - states[o].queries for o in set(owners)}
        out_o, out_t = [], []
        for o, t in zip(owners, texts):
            if left[o] > 0:
                left[o] -= 1
                out_o.append(o)
                out_t.append(t)
            else:
                states[o].done = True
        return out_o, out_t

    def exhausted(self, state: State) -> bool:
        return self.max_queries is not None and state.queries >= self.max_queries

    # ---- the call ---------------------------------------------------------------------
    def __call__(self, model: object, x: list[str], y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """Attack sentences ``x`` (list of N str) with labels ``y`` (N,) int64.

        Returns AttackResult with ``x_adv`` a list of N str, ``success`` (N,) bool from the
        model's logits on exactly ``x_adv``, ``distance`` (N,) fraction of words changed,
        ``queries`` (N,) model queries per sentence (the clean query included).
        """
        budget_threat = self.threat or WordBudget(words=self.max_words)
        budget_threat.validate(x)
        if not isinstance(y, Tensor) or y.shape != (len(x),):
            raise ValueError(f"y: expected an int64 tensor of shape ({len(x)},), got {getattr(y, 'shape', type(y))}")
        if isinstance(self.goal, Targeted):
            if self.goal.target is not None:
                target = torch.full_like(y, self.goal.target)
            elif target is None or target.shape != y.shape:
                raise ValueError("target: a Targeted() goal without a fixed class needs target (N,)")
        t0 = time.perf_counter()
        self._model, self._reject, self._forward = model, rejects(model), 0
        self._ref = (target if isinstance(self.goal, Targeted) else y).cpu()
        states = [State(orig=s, tokens=s.split(), budget=budget_threat.budget(len(s.split()))) for s in x]
        scores, success = self.query(states, list(range(len(x))), list(x))
        for s, sc, ok in zip(states, scores, success):
            s.score, s.success, s.done = sc, ok, ok
        self.search.run(self, states)  # type: ignore[attr-defined]
        x_adv = [s.text() if s.success else s.orig for s in states]
        ok = torch.tensor([s.success for s in states], dtype=torch.bool)
        if self.threat is not None:
            admitted = self.threat.admits(x_adv, list(x))  # an unchanged sentence is always admitted
            x_adv = [a if keep else o for a, keep, o in zip(x_adv, admitted.tolist(), x)]
            ok &= admitted
        res = AttackResult(x_adv=x_adv, success=ok, distance=budget_threat.distance(x_adv, list(x)),  # type: ignore[arg-type]
                           forward_calls=self._forward,
                           queries=torch.tensor([s.queries for s in states], dtype=torch.int64))
        self.seconds = time.perf_counter() - t0
        del self._model
        return res
