"""AutoAttack's ensembles and the ``Ensemble`` wrapper. Names of single attacks live in
``evaluation.registry`` (one line each); the ensembles below are registered there too.

The names a spec may combine (comma-separated):

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
    square[-Q]             Square, Q queries (and spsa, nes, hsj, boundary)
    standard               AutoAttack's standard version for the threat's norm:
                             linf, l2: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square-5000
                             l1: APGD-CE x5 and APGD-T (5 targets), both on the 3/2/1 x eps
                                 radius schedule, then FAB-T (9 targets); no Square (no L1 Square)
    plus                   AutoAttack's plus version: APGD-CE x5, APGD-DLR x5, FAB x5,
                           Square-5000, APGD-T (9), FAB-T (9)
    rand                   AutoAttack's version for randomized models: APGD-CE and APGD-DLR
                           with gradients averaged over 20 passes (EOT)

``registry.build_attacks`` expands an ensemble name into its attacks, so ``evaluate`` reports a
row per attack and runs each only on the points still robust. ``registry.build_attack`` returns
a single attack; for an ensemble name that is an :class:`Ensemble`, which runs the same attacks
in the same way inside one call (one row).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from robustlab.attacks.apgd import APGD, APGDT
from robustlab.attacks.base import Attack
from robustlab.attacks.fab import FAB
from robustlab.results import AttackResult
from robustlab.threats import LpBall, check_lp

ENSEMBLES = ("standard", "plus", "rand")


def _square(threat: LpBall, queries: int = 5000):
    from robustlab.attacks.square import Square

    # AutoAttack runs Square with p_init 0.8 for both Linf and L2.
    return Square(threat, max_queries=queries, p_init=0.8)


def ensemble(version: str, threat: LpBall) -> list[Attack]:
    """The attacks of AutoAttack's ``version`` ("standard", "plus" or "rand") for ``threat``,
    in the order they run.

    A ball with a per-sample radius (a dB budget on audio, an SNR budget, ...) gets the same
    attacks: each takes ``threat.radius(x)`` as its per-sample eps (FAB's bound and restart
    radius, Square's window values), and Square searches signals (N, C, T) with runs of samples.
    """
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
        from robustlab.attacks.base import Counter
        from robustlab.attacks.sequence import run_in_order

        thr = getattr(self.attacks[0], "threat", None) if self.attacks else None
        if thr is None:
            raise ValueError("attacks: an Ensemble's first attack must carry its threat")
        check_lp(thr)
        seq = run_in_order(self.attacks, model, model, x, y, thr, self.seed, target=target, keep_points=True)
        x_adv = x.detach().clone()
        for b, pts in seq.x_adv:
            if pts is not None and b.numel():
                x_adv[b] = pts.to(x_adv.dtype)
        success = seq.broken_by >= 0
        counter = Counter(model)
        counter.forward = sum(c.forward for c in seq.costs) + seq.judge_forward
        counter.backward = sum(c.backward for c in seq.costs)
        return AttackResult(x_adv=x_adv, success=success, distance=thr.distance(x_adv, x), forward_calls=counter.forward,
                            backward_calls=counter.backward, queries=None)


def build_attack(name: str, threat: LpBall) -> Attack:
    """One attack by name (see ``evaluation.registry``)."""
    from robustlab.evaluation.registry import build_attack as _build

    return _build(name, threat)


def build_attacks(spec: str, threat: LpBall) -> list[Attack]:
    """Attacks from a comma-separated spec (see ``evaluation.registry``)."""
    from robustlab.evaluation.registry import build_attacks as _build

    return _build(spec, threat)


def names() -> list[str]:
    from robustlab.evaluation.registry import names as _names

    return _names()
