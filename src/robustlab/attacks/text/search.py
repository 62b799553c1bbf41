"""Search methods: how the word positions and their candidates are tried. Each has
``run(attack, states)`` and advances all sentences together (one model batch per step).

- ``GreedyWIR``: rank positions by word importance (the score gain when the word is deleted or
  replaced by an unknown token), then at each position in that order take the best candidate
  if it raises the score; stop at success (Gao et al. 2018; Jin et al. 2020).
- ``Beam``: the same order, keeping the ``width`` best sentences at each position.
- ``PWWS``: Ren et al. 2019: probability-weighted word saliency (softmax of importance times
  the best swap's gain), then apply each position's best swap in that order.
- ``Genetic``: Alzantot et al. 2018: a population of perturbed sentences, fitness-proportional
  crossover and a best-of-candidates mutation.

Only positions with at least one admissible candidate are scored for importance (TextAttack
scores every word), which saves queries and changes no decision.
"""
from __future__ import annotations

import math
import random

from robustlab.attacks.text.attack import State, TextAttack


def _positions(attack: TextAttack, state: State) -> list[tuple[int, list[str]]]:
    """Editable positions of a fresh state with their candidate tokens."""
    out = []
    for pos in range(len(state.tokens)):
        if attack.editable(state, pos):
            cands = attack.replacements(state, pos)
            if cands:
                out.append((pos, cands))
    return out


def _with(tokens: list[str], pos: int, token: str) -> list[str]:
    return tokens[:pos] + [token] + tokens[pos + 1:]


def _importance(attack: TextAttack, states: list[State], how: str) -> None:
    """Set ``state.extra["order"]``: candidate positions, most important first."""
    owners, texts, where = [], [], []
    for i, s in enumerate(states):
        s.extra["cands"] = dict(_positions(attack, s)) if not s.done else {}
        for pos in s.extra["cands"]:
            toks = s.tokens[:pos] + s.tokens[pos + 1:] if how == "delete" else _with(s.tokens, pos, "[UNK]")
            owners.append(i)
            texts.append(" ".join(toks) if toks else "[UNK]")
            where.append(pos)
    owners2, texts2 = attack.trim(states, owners, texts)
    scores, _ = attack.query(states, owners2, texts2) if texts2 else ([], [])
    gain: dict[int, dict[int, float]] = {i: {} for i in range(len(states))}
    k = 0
    for o, t, pos in zip(owners, texts, where):
        if k < len(owners2) and owners2[k] == o and texts2[k] == t:
            gain[o][pos] = scores[k] - states[o].score
            k += 1
    for i, s in enumerate(states):
        s.extra["gain"] = gain[i]
        s.extra["order"] = sorted(gain[i], key=lambda p: -gain[i][p])


class GreedyWIR:
    """Greedy search by word importance. ``importance``: "delete" or "unk"."""

    def __init__(self, importance: str = "delete") -> None:
        if importance not in ("delete", "unk"):
            raise ValueError(f"importance: expected 'delete' or 'unk', got {importance!r}")
        self.importance = importance

    def run(self, attack: TextAttack, states: list[State]) -> None:
        _importance(attack, states, self.importance)
        step = [0] * len(states)
        while True:
            owners, texts, moves = [], [], []
            for i, s in enumerate(states):
                while not s.done and step[i] < len(s.extra["order"]):
                    pos = s.extra["order"][step[i]]
                    step[i] += 1
                    if attack.editable(s, pos):
                        cands = attack.replacements(s, pos)
                        sents = [" ".join(_with(s.tokens, pos, c)) for c in cands]
                        keep = attack.keep(states, [i] * len(sents), sents)
                        got = [(c, t) for c, t, k in zip(cands, sents, keep) if k]
                        if got:
                            o2, t2 = attack.trim(states, [i] * len(got), [t for _, t in got])
                            owners += o2
                            texts += t2
                            moves += [(i, pos, c) for c, _ in got[: len(t2)]]
                            break
                else:
                    s.done = True
            if not texts:
                return
            scores, success = attack.query(states, owners, texts)
            best: dict[int, tuple[float, bool, int, str]] = {}
            for (i, pos, c), sc, ok in zip(moves, scores, success):
                key = (ok, sc)
                if i not in best or key > (best[i][1], best[i][0]):
                    best[i] = (sc, ok, pos, c)
            for i, (sc, ok, pos, c) in best.items():
                s = states[i]
                if ok or sc > s.score:
                    s.tokens, s.changed = _with(s.tokens, pos, c), s.changed | {pos}
                    s.score, s.success = sc, ok
                    s.done = ok or attack.exhausted(s)
                elif attack.exhausted(s):
                    s.done = True


class Beam:
    """Beam search over the importance order, keeping ``width`` sentences per step."""

    def __init__(self, width: int = 4, importance: str = "delete") -> None:
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width: expected a positive int, got {width!r}")
        self.width, self.importance = width, importance

    def run(self, attack: TextAttack, states: list[State]) -> None:
        _importance(attack, states, self.importance)
        beams = {i: [(s.score, s.tokens, s.changed)] for i, s in enumerate(states) if not s.done}
        step = {i: 0 for i in beams}
        while beams:
            owners, texts, meta = [], [], []
            for i in list(beams):
                s = states[i]
                order = s.extra["order"]
                if s.done or step[i] >= len(order):
                    del beams[i]
                    continue
                pos = order[step[i]]
                step[i] += 1
                for sc, toks, changed in beams[i]:
                    probe = State(orig=s.orig, tokens=toks, changed=changed, budget=s.budget)
                    if not attack.editable(probe, pos):
                        continue
                    cands = attack.replacements(probe, pos)
                    sents = [" ".join(_with(toks, pos, c)) for c in cands]
                    keep = attack.keep(states, [i] * len(sents), sents)
                    got = [(c, t) for c, t, k in zip(cands, sents, keep) if k]
                    o2, t2 = attack.trim(states, [i] * len(got), [t for _, t in got])
                    owners += o2
                    texts += t2
                    meta += [(i, _with(toks, pos, c), changed | {pos}) for c, _ in got[: len(t2)]]
            if not texts:
                if not beams:
                    return
                continue
            scores, success = attack.query(states, owners, texts)
            grown: dict[int, list] = {}
            for (i, toks, changed), sc, ok in zip(meta, scores, success):
                grown.setdefault(i, []).append((sc, toks, changed, ok))
            for i, items in grown.items():
                s = states[i]
                wins = [it for it in items if it[3]]
                if wins:
                    sc, toks, changed, _ = max(wins, key=lambda it: it[0])
                    s.tokens, s.changed, s.score, s.success, s.done = toks, changed, sc, True, True
                    beams.pop(i, None)
                    continue
                pool = beams[i] + [(sc, toks, changed) for sc, toks, changed, _ in items]
                beams[i] = sorted(pool, key=lambda b: -b[0])[: self.width]
                s.score, s.tokens, s.changed = beams[i][0]
                if attack.exhausted(s):
                    s.done = True
                    beams.pop(i, None)


class PWWS:
    """Probability-weighted word saliency (Ren et al. 2019) with "unk" saliency."""

    def run(self, attack: TextAttack, states: list[State]) -> None:
        _importance(attack, states, "unk")
        owners, texts, meta = [], [], []
        for i, s in enumerate(states):
            for pos in s.extra["order"]:
                cands = s.extra["cands"][pos]
                sents = [" ".join(_with(s.tokens, pos, c)) for c in cands]
                keep = attack.keep(states, [i] * len(sents), sents)
                got = [(c, t) for c, t, k in zip(cands, sents, keep) if k]
                o2, t2 = attack.trim(states, [i] * len(got), [t for _, t in got])
                owners += o2
                texts += t2
                meta += [(i, pos, c) for c, _ in got[: len(t2)]]
        scores, _ = attack.query(states, owners, texts) if texts else ([], [])
        best: dict[tuple[int, int], tuple[float, str]] = {}
        for (i, pos, c), sc in zip(meta, scores):
            if (i, pos) not in best or sc > best[(i, pos)][0]:
                best[(i, pos)] = (sc, c)
        for i, s in enumerate(states):
            sal = s.extra["gain"]
            cand = [pos for pos in s.extra["order"] if (i, pos) in best]
            if not cand:
                s.done = True
                continue
            z = max(sal[p] for p in cand)
            w = {p: math.exp(sal[p] - z) for p in cand}
            total = sum(w.values())
            s.extra["plan"] = sorted(cand, key=lambda p: -(w[p] / total) * (best[(i, p)][0] - s.score))
            s.extra["step"] = 0
        while True:
            owners, texts, moves = [], [], []
            for i, s in enumerate(states):
                plan = s.extra.get("plan", [])
                while not s.done and s.extra["step"] < len(plan):
                    pos = plan[s.extra["step"]]
                    s.extra["step"] += 1
                    if attack.editable(s, pos):
                        tok = best[(i, pos)][1]
                        o2, t2 = attack.trim(states, [i], [" ".join(_with(s.tokens, pos, tok))])
                        if t2:
                            owners += o2
                            texts += t2
                            moves.append((i, pos, tok))
                        break
                else:
                    s.done = True
            if not texts:
                return
            scores, success = attack.query(states, owners, texts)
            for (i, pos, tok), sc, ok in zip(moves, scores, success):
                s = states[i]
                s.tokens, s.changed, s.score, s.success = _with(s.tokens, pos, tok), s.changed | {pos}, sc, ok
                s.done = ok or attack.exhausted(s)


class Genetic:
    """Alzantot et al. (2018): ``population`` members, ``generations`` rounds, seeded."""

    def __init__(self, population: int = 20, generations: int = 10, temperature: float = 0.3, seed: int = 0) -> None:
        if population < 2 or generations < 1:
            raise ValueError(f"population/generations: expected >= 2 and >= 1, got {population}, {generations}")
        self.population, self.generations, self.temperature, self.seed = population, generations, temperature, seed

    def _mutations(self, attack: TextAttack, states: list[State], members: list[tuple[int, State]],
                   rng: random.Random) -> list[tuple[int, State]]:
        """For each (owner, member): pick a random editable position, try all its candidates,
        keep the best (one batch for all)."""
        owners, texts, meta = [], [], []
        for k, (i, m) in enumerate(members):
            opts = [p for p in states[i].extra["cands"] if attack.editable(m, p)]
            if not opts:
                continue
            pos = rng.choice(opts)
            cands = attack.replacements(m, pos)
            sents = [" ".join(_with(m.tokens, pos, c)) for c in cands]
            keep = attack.keep(states, [i] * len(sents), sents)
            got = [(c, t) for c, t, ok in zip(cands, sents, keep) if ok]
            o2, t2 = attack.trim(states, [i] * len(got), [t for _, t in got])
            owners += o2
            texts += t2
            meta += [(k, pos, c) for c, _ in got[: len(t2)]]
        out = list(members)
        if texts:
            scores, success = attack.query(states, owners, texts)
            best: dict[int, tuple[bool, float, int, str]] = {}
            for (k, pos, c), sc, ok in zip(meta, scores, success):
                if k not in best or (ok, sc) > best[k][:2]:
                    best[k] = (ok, sc, pos, c)
            for k, (ok, sc, pos, c) in best.items():
                i, m = members[k]
                out[k] = (i, State(orig=m.orig, tokens=_with(m.tokens, pos, c), changed=m.changed | {pos},
                                   score=sc, success=ok, budget=m.budget))
        return out

    def run(self, attack: TextAttack, states: list[State]) -> None:
        rng = random.Random(self.seed)
        _importance(attack, states, "delete")
        live = [i for i, s in enumerate(states) if not s.done and s.extra["cands"]]
        pops = {i: [m for _, m in self._mutations(attack, states, [(i, states[i])] * self.population, rng)]
                for i in live}
        for _ in range(self.generations):
            children: list[tuple[int, State]] = []
            for i in list(pops):
                s, pop = states[i], pops[i]
                elite = max(pop, key=lambda m: (m.success, m.score))
                if elite.success or elite.score > s.score:
                    s.tokens, s.changed, s.score, s.success = elite.tokens, elite.changed, elite.score, elite.success
                if s.success or attack.exhausted(s):
                    s.done = True
                    del pops[i]
                    continue
                z = max(m.score for m in pop)
                weights = [math.exp((m.score - z) / self.temperature) for m in pop]
                for _ in range(self.population - 1):
                    a, b = rng.choices(pop, weights=weights, k=2)
                    toks, changed = list(a.tokens), set()
                    for p in range(len(toks)):
                        src = a if rng.random() < 0.5 else b
                        toks[p] = src.tokens[p]
                        if p in src.changed:
                            changed.add(p)
                    if len(changed) > s.budget:
                        toks, changed = list(a.tokens), set(a.changed)
                    children.append((i, State(orig=s.orig, tokens=toks, changed=frozenset(changed), budget=s.budget,
                                              score=a.score)))
                pops[i] = [elite]
            for i, m in self._mutations(attack, states, children, rng):
                pops[i].append(m)
            if not pops:
                return
        for i, pop in pops.items():
            s = states[i]
            elite = max(pop, key=lambda m: (m.success, m.score))
            if elite.success or elite.score > s.score:
                s.tokens, s.changed, s.score, s.success = elite.tokens, elite.changed, elite.score, elite.success
