"""Every attack and certifier name the CLI, configs and ``evaluate(attacks="...")`` accept: one
line each. ``names()``, the CLI help and the README's table are generated from here.

An entry: a usage pattern shown to users, a regular expression (full match, lower case), the
threat kinds it supports (an Lp norm, or a threat's spec prefix such as "words" or "db"), a one-line
description, and a builder ``(match, threat) -> attack | [attacks]``. Adding an attack is its
own file plus one line in ``ATTACKS``.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from robustlab.attacks.apgd import APGD, APGDT
from robustlab.attacks.base import Attack
from robustlab.attacks.cw import CarliniWagner
from robustlab.attacks.decision import Boundary, HopSkipJump
from robustlab.attacks.deepfool import DeepFool
from robustlab.attacks.fab import FAB
from robustlab.attacks.gradient import FGSM, PGD
from robustlab.attacks.score import NES, SPSA
from robustlab.attacks.square import Square
from robustlab.evaluation.presets import ENSEMBLES, ensemble

LP = ("linf", "l2", "l1")


@dataclass(frozen=True)
class Entry:
    usage: str  # shown in help: "pgd[-STEPS][xRESTARTS]"
    pattern: str  # regular expression, full match on the lower-cased name
    threats: tuple[str, ...]  # supported threat kinds (Lp norms, or spec prefixes)
    description: str
    build: Callable[[re.Match, object], object]  # (match, threat) -> attack or list of attacks
    ensemble: bool = False


def _int(m: re.Match, key: str, default: int) -> int:
    v = m.groupdict().get(key)
    return default if v is None else int(v)


def _queries(m: re.Match, default: int) -> int:
    q = m.groupdict().get("q")
    if q is None:
        return default
    n = int(q) * (1000 if m.groupdict().get("k") else 1)
    if n < 1:
        raise ValueError(f"attacks: {m.string!r}: the query budget must be >= 1")
    return n


_Q = r"(?:-(?P<q>\d+)(?P<k>k?))?"

ATTACKS: list[Entry] = [
    Entry("fgsm", r"fgsm", LP, "FGSM, one signed-gradient step", lambda m, t: FGSM(t)),
    Entry("pgd[-margin][-STEPS][xRESTARTS]", r"pgd(?:-(?P<loss>ce|margin))?(?:-(?P<steps>\d+))?(?:x(?P<restarts>\d+))?",
          LP, "PGD (40 steps, 1 restart, cross-entropy)",
          lambda m, t: PGD(t, steps=_int(m, "steps", 40), restarts=_int(m, "restarts", 1), loss=m["loss"] or "ce")),
    Entry("apgd-ce[-STEPS][xRESTARTS]", r"apgd-(?P<loss>ce|dlr)(?:-(?P<steps>\d+))?(?:x(?P<restarts>\d+))?", LP,
          "APGD on cross-entropy (or apgd-dlr), 100 steps",
          lambda m, t: APGD(t, loss=m["loss"], steps=_int(m, "steps", 100), restarts=_int(m, "restarts", 1))),
    Entry("apgd-t[-STEPS]", r"apgd-t(?:-(?P<steps>\d+))?", LP, "APGD-T: targeted DLR, top 9 classes",
          lambda m, t: APGDT(t, steps=_int(m, "steps", 100))),
    Entry("fab[-t][-STEPS][xRESTARTS]", r"fab(?P<t>-t)?(?:-(?P<steps>\d+))?(?:x(?P<restarts>\d+))?", LP,
          "FAB minimum-norm attack (fab-t: top 9 targets)",
          lambda m, t: FAB(t, steps=_int(m, "steps", 100), restarts=_int(m, "restarts", 1),
                           n_target_classes=9 if m["t"] else None)),
    Entry("cw", r"cw", ("l2",), "Carlini-Wagner L2, bounded by eps", lambda m, t: CarliniWagner(t)),
    Entry("deepfool", r"deepfool", ("linf", "l2"), "DeepFool, projected into the ball", lambda m, t: DeepFool(t)),
    Entry("square[-Q]", r"square" + _Q, ("linf", "l2"), "Square, score-based, Q queries (5000)",
          lambda m, t: Square(t, max_queries=_queries(m, 5000), p_init=0.8 if t.norm == "linf" else 0.1)),
    Entry("spsa[-Q]", r"spsa" + _Q, LP, "SPSA, score-based gradient estimate, Q queries (5000)",
          lambda m, t: SPSA(t, max_queries=_queries(m, 5000))),
    Entry("nes[-Q]", r"nes" + _Q, LP, "NES, score-based gradient estimate, Q queries (5000)",
          lambda m, t: NES(t, max_queries=_queries(m, 5000))),
    Entry("hsj[-Q]", r"(?:hsj|hopskipjump)" + _Q, ("linf", "l2"), "HopSkipJump, label-only, Q queries (10000)",
          lambda m, t: HopSkipJump(t, max_queries=_queries(m, 10000))),
    Entry("boundary[-Q]", r"boundary" + _Q, ("l2",), "Boundary attack, label-only, Q queries (5000)",
          lambda m, t: Boundary(t, max_queries=_queries(m, 5000))),
    Entry("standard", r"standard", LP, "AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square-5000",
          lambda m, t: ensemble("standard", t), ensemble=True),
    Entry("plus", r"plus", LP, "AutoAttack plus: APGD-CE/DLR x5, FAB x5, Square, APGD-T, FAB-T",
          lambda m, t: ensemble("plus", t), ensemble=True),
    Entry("rand", r"rand", LP, "AutoAttack for randomized models: APGD-CE/DLR with EOT-20",
          lambda m, t: ensemble("rand", t), ensemble=True),
    Entry("fast", r"fast", ("linf", "l2"), "AutoAttack-strength evaluation on an adaptive budget, one row, "
          "self-audited by standard on 5% of its robust points (attacks/fast.py)", lambda m, t: _fast(t)),
    Entry("{textfooler,pwws,deepwordbug,genetic}-like[-Q], filter-evasion[-Q], wordnet-greedy[-Q]",
          r"(?P<name>textfooler-like|pwws-like|deepwordbug-like|genetic-like|filter-evasion|wordnet-greedy)" + _Q,
          ("words",), "text attacks (docs/text.md): goal + transformation + constraints + search, Q queries per sentence",
          lambda m, t: _text_recipe(m["name"], t, _queries(m, 0) or None)),
]


def _fast(threat: object) -> list[object]:
    from robustlab.attacks.fast import build_fast

    return build_fast(threat)  # type: ignore[arg-type]


def _text_recipe(name: str, threat: object, max_queries: int | None) -> object:
    from robustlab.attacks.text import recipe

    return recipe(name, threat, max_queries=max_queries)  # type: ignore[arg-type]

def _certify(name: str) -> Callable[[re.Match, object], object]:
    def build(m: re.Match, t: object) -> object:
        import robustlab.certify as c

        return getattr(c, name)()
    return build


CERTIFIERS: list[Entry] = [
    Entry("linear", r"linear(?:-exact)?", LP, "exact margin of an affine model (a linear classifier)",
          _certify("LinearExact")),
    Entry("ibp", r"ibp", LP, "interval bound propagation (Gowal et al. 2018)", _certify("IBP")),
    Entry("crown", r"crown", LP, "CROWN linear bounds (Zhang et al. 2018), tighter than IBP", _certify("CROWN")),
    Entry("alpha-crown", r"alpha-crown", LP, "CROWN with optimised ReLU slopes (Xu et al. 2021)",
          _certify("AlphaCROWN")),
    Entry("smoothing", r"smoothing", ("l2",), "randomized smoothing CERTIFY (Cohen et al. 2019) of a Smoothed model",
          _certify("Smoothing")),
    Entry("lipschitz", r"lipschitz", ("l2",), "margin / (sqrt(2) L) of a 1-Lipschitz network", _certify("Lipschitz")),
]


def threat_kinds(threat: object) -> set[str]:
    """What a threat is, for matching an attack's support: its spec prefix and its Lp norm."""
    kinds = set()
    spec = getattr(threat, "spec", None)
    if callable(spec):
        kinds.add(str(spec()).split(":", 1)[0].lower())
    norm = getattr(threat, "norm", None)
    if isinstance(norm, str):
        kinds.add(norm)
    return kinds


def names(entries: list[Entry] | None = None) -> list[str]:
    """The usage strings of every registered attack (or of ``entries``)."""
    return [e.usage for e in (ATTACKS if entries is None else entries)]


def markdown_table(entries: list[Entry] | None = None) -> str:
    """The README's table of names: usage, threats, description (one row per registry line)."""
    rows = ["| name | threats | what |", "|---|---|---|"]
    for e in ATTACKS if entries is None else entries:
        rows.append(f"| `{e.usage}` | {', '.join(e.threats)} | {e.description} |")
    return "\n".join(rows)


def _lookup(name: str, threat: object, entries: list[Entry], what: str) -> object:
    key = name.strip().lower()
    for e in entries:
        m = re.fullmatch(e.pattern, key)
        if m:
            kinds = threat_kinds(threat) if threat is not None else set(e.threats)
            if not kinds & set(e.threats):
                raise ValueError(f"{what}: {key} supports {'/'.join(e.threats)} threats, not "
                                 f"{threat.spec() if hasattr(threat, 'spec') else threat}")  # type: ignore[union-attr]
            return e.build(m, threat)
    kind = "attack" if what == "attacks" else "certifier"
    raise ValueError(f"{what}: unknown {kind} {name!r}; expected a comma-separated list of: {', '.join(names(entries))}")


def build_attack(name: str, threat: object) -> Attack:
    """One attack by name; an ensemble name gives an ``Ensemble`` (one row)."""
    from robustlab.evaluation.presets import Ensemble

    out = _lookup(name, threat, ATTACKS, "attacks")
    if isinstance(out, list):
        return Ensemble(tuple(out), label=f"AutoAttack-{name.strip().lower()}")  # type: ignore[return-value]
    return out  # type: ignore[return-value]


def build_attacks(spec: str, threat: object) -> list[Attack]:
    """Attacks from a comma-separated spec such as "fgsm,pgd-100x2" or "standard"; ensemble
    names expand into their attacks (a row each in ``evaluate``'s table)."""
    if not isinstance(spec, str):
        raise TypeError(f"attacks: expected a string such as 'pgd,square', got {type(spec).__name__}")
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise ValueError("attacks: empty attack list")
    out: list[Attack] = []
    for p in parts:
        a = _lookup(p, threat, ATTACKS, "attacks")
        out.extend(a if isinstance(a, list) else [a])  # type: ignore[arg-type]
    return out


def build_certifiers(spec: str, threat: object | None = None) -> list[object]:
    """Certifiers from a comma-separated spec such as "crown" or "ibp,crown"."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise ValueError("certify: empty certifier list")
    return [_lookup(p, threat, CERTIFIERS, "certify") for p in parts]


__all__ = ["ATTACKS", "CERTIFIERS", "Entry", "names", "build_attack", "build_attacks", "build_certifiers",
           "threat_kinds", "ENSEMBLES", "markdown_table"]
