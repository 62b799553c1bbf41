"""Black-box attack names, as the CLI accepts them (to be folded into ``presets.py``).

    square, square-Q            Square, Q queries (default 5000); p_init 0.8 (Linf) / 0.1 (L2)
    spsa, spsa-Q                SPSA, Q queries (default 5000)
    nes, nes-Q                  NES, Q queries (default 5000)
    hopskipjump, hsj, hsj-Q     HopSkipJump in the threat's norm (l2 or linf), stops at eps,
                                Q queries (default 10000)
    boundary, boundary-Q        Boundary attack (l2 threats only), Q queries (default 5000)

Q is a per-point query budget; a suffix k means thousands ("hsj-5k").
"""
from __future__ import annotations

import re

from robustlab.attacks.base import Attack
from robustlab.threats import LpBall

_NAME = re.compile(r"^(?P<kind>square|spsa|nes|hopskipjump|hsj|boundary)(?:-(?P<q>\d+)(?P<k>k?))?$")


def names() -> list[str]:
    return ["square", "square-Q", "spsa", "spsa-Q", "nes", "nes-Q", "hopskipjump", "hsj-Q", "boundary",
            "boundary-Q"]


def build_blackbox_attack(name: str, threat: LpBall) -> Attack | None:
    """The black-box attack ``name`` configured for ``threat``, or None if the name is not one."""
    from robustlab.attacks.decision import Boundary, HopSkipJump
    from robustlab.attacks.score import NES, SPSA
    from robustlab.attacks.square import Square

    m = _NAME.match(name.strip().lower())
    if not m:
        return None
    kind = m["kind"]
    q = None if m["q"] is None else int(m["q"]) * (1000 if m["k"] else 1)
    if q is not None and q < 1:
        raise ValueError(f"attacks: {name!r}: the query budget must be >= 1")
    if kind == "square":
        if threat.norm not in ("linf", "l2"):
            raise ValueError(f"attacks: square supports linf and l2 threats, not {threat.norm}")
        return Square(threat, max_queries=q or 5000, p_init=0.8 if threat.norm == "linf" else 0.1)
    if kind == "spsa":
        return SPSA(threat, max_queries=q or 5000)
    if kind == "nes":
        return NES(threat, max_queries=q or 5000)
    if kind in ("hopskipjump", "hsj"):
        if threat.norm not in ("linf", "l2"):
            raise ValueError(f"attacks: hopskipjump supports linf and l2 threats, not {threat.norm}")
        return HopSkipJump(norm=threat.norm, eps=threat.eps, max_queries=q or 10000)
    if threat.norm != "l2":
        raise ValueError(f"attacks: boundary is an L2 attack; use an l2 threat, not {threat.norm}")
    return Boundary(eps=threat.eps, max_queries=q or 5000)


def build_attacks_with_blackbox(spec: str, threat: LpBall) -> list[Attack]:
    """Like ``presets.build_attacks``, also accepting the black-box names above."""
    from robustlab.evaluation.presets import build_attack

    parts = [p for p in spec.split(",") if p.strip()]
    if not parts:
        raise ValueError("attacks: empty attack list")
    return [build_blackbox_attack(p, threat) or build_attack(p, threat) for p in parts]


__all__ = ["names", "build_blackbox_attack", "build_attacks_with_blackbox"]
