"""Attack lists by name, as the CLI and ``evaluate(attacks="...")`` accept them.

A spec is a comma-separated list of attack names:
    fgsm              FGSM
    pgd               PGD-40, 1 restart (cross-entropy)
    pgd-100           PGD with 100 steps
    pgd-40x5          PGD-40 with 5 restarts
    pgd-margin-100    PGD-100 on the C&W margin loss
"""
from __future__ import annotations

import re

from robustlab.attacks.base import Attack
from robustlab.attacks.gradient import FGSM, PGD
from robustlab.threats import LpBall

_PGD = re.compile(r"^pgd(?:-(?P<loss>ce|margin))?(?:-(?P<steps>\d+))?(?:x(?P<restarts>\d+))?$")


def names() -> list[str]:
    return ["fgsm", "pgd", "pgd-STEPS", "pgd-STEPSxRESTARTS", "pgd-margin-STEPS"]


def build_attack(name: str, threat: LpBall) -> Attack:
    key = name.strip().lower()
    if key == "fgsm":
        return FGSM(threat)
    m = _PGD.match(key)
    if m:
        return PGD(threat, steps=int(m["steps"] or 40), restarts=int(m["restarts"] or 1), loss=m["loss"] or "ce")
    raise ValueError(f"attacks: unknown attack {name!r}; expected a comma-separated list of {names()}")


def build_attacks(spec: str, threat: LpBall) -> list[Attack]:
    """Attacks from a comma-separated spec such as "fgsm,pgd-100x2"."""
    parts = [p for p in spec.split(",") if p.strip()]
    if not parts:
        raise ValueError("attacks: empty attack list")
    return [build_attack(p, threat) for p in parts]
