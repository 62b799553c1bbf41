"""Attack lists by name, as the CLI and ``evaluate(attacks="...")`` accept them.

A spec is a comma-separated list of attack names or ensembles:

    fgsm                   FGSM
    pgd                    PGD-40, 1 restart (cross-entropy)
    pgd-100                PGD with 100 steps
    pgd-40x5               PGD-40 with 5 restarts
    pgd-margin-100         PGD-100 on the C&W margin loss
    apgd-ce[-S][xR]        APGD on cross-entropy, S steps (100), R restarts (1)
    apgd-dlr[-S][xR]       APGD on the DLR loss
    apgd-t[-S]             APGD-T: targeted DLR against the top 9 other classes
    fab[-S][xR]            FAB, untargeted (all class boundaries)
    fab-t[-S]              FAB-T: the top 9 other classes in turn
    cw                     Carlini-Wagner L2 (l2 threats only), bounded by eps
    deepfool               DeepFool (linf, l2), projected into the ball
    square[-Q]             Square, Q queries (and the other black-box names of
                           ``blackbox_presets``: spsa, nes, hsj, boundary)
    standard               AutoAttack's standard version for the threat's norm:
                             linf, l2: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square-5000
                             l1: APGD-CE x5 and APGD-T (5 targets), both on the 3/2/1 x eps
                                 radius schedule, then FAB-T (9 targets); no Square (no L1 Square)
    plus                   AutoAttack's plus version: APGD-CE x5, APGD-DLR x5, FAB x5,
                           Square-5000, APGD-T (9), FAB-T (9)
    rand                   AutoAttack's version for randomized models: APGD-CE and APGD-DLR
                           with gradients averaged over 20 passes (EOT)

``build_attacks`` expands an ensemble name into its attacks, so ``evaluate`` reports a row per
attack and runs each only on the points still robust. ``build_attack`` returns a single
attack; for an ensemble name that is an :class:`Ensemble`, which runs the same attacks in the
same way inside one call (one row).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from robustlab.attacks.apgd import APGD, APGDT
from robustlab.attacks.base import Attack
from robustlab.attacks.cw import CarliniWagner
from robustlab.attacks.deepfool import DeepFool
from robustlab.attacks.fab import FAB
from robustlab.attacks.gradient import FGSM, PGD
from robustlab.results import AttackResult
from robustlab.threats import LpBall, check_lp

_PGD = re.compile(r"^pgd(?:-(?P<loss>ce|margin))?(?:-(?P<steps>\d+))?(?:x(?P<restarts>\d+))?$")
_APGD = re.compile(r"^apgd-(?P<loss>ce|dlr)(?:-(?P<steps>\d+))?(?:x(?P<restarts>\d+))?$")
_APGDT = re.compile(r"^apgd-t(?:-(?P<steps>\d+))?$")
_FAB = re.compile(r"^fab(?P<t>-t)?(?:-(?P<steps>\d+))?(?:x(?P<restarts>\d+))?$")

ENSEMBLES = ("standard", "plus", "rand")


def names() -> list[str]:
    return ["fgsm", "pgd", "pgd-STEPS", "pgd-STEPSxRESTARTS", "pgd-margin-STEPS", "apgd-ce", "apgd-dlr",
            "apgd-t", "fab", "fab-t", "cw", "deepfool", "square", *ENSEMBLES]


def _square(threat: LpBall, queries: int = 5000):
    from robustlab.attacks.square import Square

    # AutoAttack runs Square with p_init 0.8 for both Linf and L2.
    return Square(threat, max_queries=queries, p_init=0.8)


def ensemble(version: str, threat: LpBall) -> list[Attack]:
    """The attacks of AutoAttack's ``version`` ("standard", "plus" or "rand") for ``threat``,
    in the order they run."""
    check_lp(threat)
    if version == "standard":
        if threat.norm == "l1":
            return [APGD(threat, loss="ce", restarts=5, large_reps=True),
                    APGDT(threat, n_target_classes=5, large_reps=True),
                    FAB(threat, n_target_classes=9)]
        return [APGD(threat, loss="ce"), APGDT(threat, n_target_classes=9), FAB(threat, n_target_classes=9),
                _square(threat)]
    if version == "plus":
        out: list[Attack] = [APGD(threat, loss="ce", restarts=5), APGD(threat, loss="dlr", restarts=5),
                             FAB(threat, restarts=5)]
        if threat.norm != "l1":
            out.append(_square(threat))
        return out + [APGDT(threat, n_target_classes=9), FAB(threat, n_target_classes=9)]
    if version == "rand":
        return [APGD(threat, loss="ce", eot_iter=20), APGD(threat, loss="dlr", eot_iter=20)]
    raise ValueError(f"version: expected one of {ENSEMBLES}, got {version!r}")


@dataclass(frozen=True)
class Ensemble:
    """Attacks run in order inside one call, each on the points no earlier one broke; the
    per-sample result is the first success (or the last attack's attempt). Counts add up.

    ``evaluate`` does the same with a row per attack when given the list itself
    (``build_attacks("standard", threat)``); this wrapper is for places that take one attack.
    """

    attacks: tuple
    label: str = "ensemble"
    seed: int | None = 0

    @property
    def name(self) -> str:
        return self.label

    def __call__(self, model, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        n = x.shape[0]
        x_adv = x.detach().clone()
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
        fwd = bwd = 0
        queries = None
        for j, a in enumerate(self.attacks):
            idx = (~success).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            if self.seed is not None and dataclasses.is_dataclass(a) and any(f.name == "seed" for f in dataclasses.fields(a)):
                a = dataclasses.replace(a, seed=self.seed + 7919 * j)
            r = a(model, x[idx], y[idx], target=None if target is None else target[idx])
            fwd += int(r.forward_calls)
            bwd += int(r.backward_calls)
            if r.queries is not None:
                queries = torch.zeros(n, dtype=torch.int64, device=x.device) if queries is None else queries
                queries[idx] += r.queries.to(queries.device, torch.int64)
            x_adv[idx] = r.x_adv.to(x_adv.dtype)
            success[idx[r.success]] = True
        thr = getattr(self.attacks[0], "threat", None) if self.attacks else None
        if isinstance(thr, LpBall):
            dist = thr.distance(x_adv, x)
        else:  # members without a threat attribute: report the Linf distance
            dist = (x_adv - x).reshape(n, -1).abs().amax(dim=1)
        return AttackResult(x_adv=x_adv, success=success, distance=dist, forward_calls=fwd,
                            backward_calls=bwd, queries=queries)


def build_attack(name: str, threat: LpBall) -> Attack:
    """One attack by name (see the module docstring); ensembles come back as an :class:`Ensemble`."""
    key = name.strip().lower()
    if key in ENSEMBLES:
        return Ensemble(tuple(ensemble(key, threat)), label=f"AutoAttack-{key}")
    if key == "fgsm":
        return FGSM(threat)
    m = _PGD.match(key)
    if m:
        return PGD(threat, steps=int(m["steps"] or 40), restarts=int(m["restarts"] or 1), loss=m["loss"] or "ce")
    m = _APGD.match(key)
    if m:
        return APGD(threat, loss=m["loss"], steps=int(m["steps"] or 100), restarts=int(m["restarts"] or 1))
    m = _APGDT.match(key)
    if m:
        return APGDT(threat, steps=int(m["steps"] or 100))
    m = _FAB.match(key)
    if m:
        return FAB(threat, steps=int(m["steps"] or 100), restarts=int(m["restarts"] or 1),
                   n_target_classes=9 if m["t"] else None)
    if key == "cw":
        if threat.norm != "l2":
            raise ValueError(f"attacks: cw is an L2 attack; use an l2 threat, not {threat.norm}")
        return CarliniWagner(threat)
    if key == "deepfool":
        if threat.norm not in ("linf", "l2"):
            raise ValueError(f"attacks: deepfool supports linf and l2 threats, not {threat.norm}")
        return DeepFool(threat)
    from robustlab.evaluation.blackbox_presets import build_blackbox_attack

    a = build_blackbox_attack(key, threat)
    if a is not None:
        return a
    raise ValueError(f"attacks: unknown attack {name!r}; expected a comma-separated list of {names()}")


def build_attacks(spec: str, threat: LpBall) -> list[Attack]:
    """Attacks from a comma-separated spec such as "fgsm,pgd-100x2" or "standard"; ensemble
    names expand into their attacks (a row each in ``evaluate``'s table)."""
    parts = [p.strip().lower() for p in spec.split(",") if p.strip()]
    if not parts:
        raise ValueError("attacks: empty attack list")
    out: list[Attack] = []
    for p in parts:
        if p in ENSEMBLES:
            out.extend(ensemble(p, threat))
        else:
            out.append(build_attack(p, threat))
    return out
