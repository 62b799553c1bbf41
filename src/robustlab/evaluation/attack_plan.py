"""What an evaluation runs: the attacks and certifiers a call names (a list, a registry spec
such as "standard" or "pgd-100,square", or the default), and the attacks a defense names for
itself, which a preset runs last.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from robustlab.attacks.base import Attack
from robustlab.attacks.gradient import PGD


def without_early_stop(attack: Attack) -> Attack:
    """A random defense's view (EOT) is not its deployed draw: an attack that drops a point once
    the view misclassifies it may stop where the deployed model is still right, so attacks on a
    ``random = True`` model run every step (the deployed model judges the returned point)."""
    if dataclasses.is_dataclass(attack) and any(f.name == "early_stop" for f in dataclasses.fields(attack)):
        return dataclasses.replace(attack, early_stop=False)  # type: ignore[type-var]
    return attack


def default_attacks(threat: object) -> list[Attack]:
    """The default evaluation: PGD-40 with one random restart (cross-entropy)."""
    return [PGD(threat, steps=40, restarts=1)]  # type: ignore[arg-type]


def resolve_attacks(attacks: Sequence[Attack] | str | None, threat: object) -> list[Attack]:
    """A list of attacks from a list, a registry spec ("pgd-100,square") or None (the default)."""
    if attacks is None:
        return default_attacks(threat)
    if isinstance(attacks, str):
        from robustlab.evaluation.registry import build_attacks

        return build_attacks(attacks, threat)
    attacks = list(attacks)
    if not attacks:
        raise ValueError("attacks: expected at least one attack")
    for a in attacks:
        if not callable(a):
            raise TypeError(f"attacks: {a!r} is not callable")
    return attacks


def adaptive_attacks_of(model: object, threat: object) -> list[Attack]:
    """The attacks a defense names for itself (``model.adaptive_attacks(threat)``, e.g. the
    squeezing attack of a 1-bit squeezer): a preset (or the default) runs them after its own,
    on the points those leave; an explicit list of attacks runs exactly what it lists."""
    extra = getattr(model, "adaptive_attacks", None)
    return list(extra(threat)) if callable(extra) else []


def resolve_certifiers(certifiers: Sequence[object] | str | None) -> list[object]:
    if certifiers is None:
        return []
    if isinstance(certifiers, str):
        from robustlab.evaluation.registry import build_certifiers

        return build_certifiers(certifiers)
    out = list(certifiers)
    for c in out:
        if not callable(c):
            raise TypeError(f"certifiers: {c!r} is not callable")
    return out


__all__ = ["default_attacks", "resolve_attacks", "adaptive_attacks_of", "resolve_certifiers", "without_early_stop"]
