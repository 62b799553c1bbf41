"""Auto-PGD (Croce & Hein 2020): PGD with a step size that adapts itself, and the DLR loss.

APGD needs no step-size tuning. Linf and L2: the step starts at 2 * eps and is halved at
checkpoints (after 22% of the budget, then at intervals shrinking by 3% down to 6%) when the
loss rose on fewer than ``rho`` of the steps since the last checkpoint, or when the step was
not just halved and the best loss did not improve; after a halving the iterate goes back to
the best point found. Every step mixes the projected gradient step with the previous move
(momentum 0.75). L1 follows the variant of Croce & Hein 2021 ("Mind the box"): a sparse
step on the top-k gradient coordinates, k and the step size adapted to the sparsity of the
best point, an exact projection onto the intersection of the L1 ball and the [0, 1] box, and
optionally a schedule of shrinking radii (3, 2, 1 times eps) that the standard L1 ensemble
uses.

Losses: cross-entropy ("ce") and the Difference of Logits Ratio ("dlr", shift and scale
invariant in the logits, so it does not saturate on over-confident models). ``APGDT`` is the
targeted version of AutoAttack: one run against each of the top-k other classes of the clean
prediction, on the targeted DLR loss, stopping for a point the moment it is misclassified.

Cost, counted: one forward and one backward pass per step (times ``eot_iter``) on the points
still unbroken, plus one for the starting point; points leave the batch the moment they are
broken (``early_stop``). APGD-100 on N robust points therefore costs at most N * 101 forward
and backward passes per restart; APGD-T at most N * (1 + 101 * n_target_classes).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.attacks.base import Counter, ModelGuard, finish, make_generator, prepare
from robustlab.attacks.apgd_run import _apgd_points, apgd_run  # noqa: F401
from robustlab.attacks.losses import apgd_loss, dlr_loss, rejects  # noqa: F401
from robustlab.results import AttackResult
from robustlab.threats import LpBall, check_lp
from robustlab.threats.lp import project_l1_box  # noqa: F401 (re-exported: where it used to live)
from robustlab.validation import check_positive_int

def _check_fraction(value: object, name: str, lo_open: bool = True) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and (0 < value <= 1 if lo_open else 0 <= value <= 1)
    if not ok:
        raise ValueError(f"{name}: expected a number in {'(0, 1]' if lo_open else '[0, 1]'}, got {value!r}")
    return float(value)


def _check_common(a) -> None:
    check_lp(a.threat)
    check_positive_int(a.steps, "steps")
    check_positive_int(a.restarts, "restarts")
    check_positive_int(a.eot_iter, "eot_iter")
    if a.loss not in ("ce", "dlr"):
        raise ValueError(f"loss: expected 'ce' or 'dlr', got {a.loss!r}")
    _check_fraction(a.rho, "rho")
    _check_fraction(a.momentum, "momentum")


def _need_classes(loss: str, n_classes: int, targeted: bool) -> None:
    need = 4 if targeted else 3
    if loss == "dlr" and n_classes < need:
        raise ValueError(f"model: the {'targeted ' if targeted else ''}DLR loss needs at least {need} classes, "
                         f"got {n_classes}; use loss='ce'")


@dataclass(frozen=True)
class APGD:
    """Auto-PGD, untargeted (or targeted at a given ``target``), on the CE or DLR loss.

    Args:
        threat: the LpBall (linf, l2 or l1; eps in [0, 1] pixel units).
        loss: "ce" (APGD-CE) or "dlr" (APGD-DLR).
        steps: iterations per restart (100 in AutoAttack).
        restarts: runs from independent random starts; each later run attacks only the points
            still unbroken; for the others the highest-loss point over all runs is returned.
        rho: the step is halved at a checkpoint when the loss rose on at most this fraction of
            the steps since the last one.
        momentum: weight of the new step against the previous move (0.75; 1 = no momentum).
        eot_iter: gradients averaged over this many forward/backward passes per step
            (Expectation over Transformation, for randomized models).
        large_reps: L1: run the 3, 2, 1 x eps radius schedule (AutoAttack's L1 setting).
        early_stop: drop a point from the batch once it is broken.
        seed: seed of the random starts; the same seed gives the same x_adv.
    """

    threat: LpBall
    loss: str = "ce"
    steps: int = 100
    restarts: int = 1
    rho: float = 0.75
    momentum: float = 0.75
    eot_iter: int = 1
    large_reps: bool = False
    early_stop: bool = True
    seed: int | None = 0

    def __post_init__(self) -> None:
        _check_common(self)

    @property
    def name(self) -> str:
        r = f"x{self.restarts}" if self.restarts > 1 else ""
        e = f"-EOT{self.eot_iter}" if self.eot_iter > 1 else ""
        return f"APGD-{self.loss.upper()}{r}{e}"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """Attack a batch.

        Args:
            model: maps (N, C, H, W) inputs in [0, 1] to (N, K) logits.
            x: (N, C, H, W) clean inputs in [0, 1].
            y: (N,) int64 true labels.
            target: (N,) int64 target classes: then the loss is the targeted one and success
                means reaching the target.
        """
        n_classes = prepare(model, x, y, target)
        _need_classes(self.loss, n_classes, target is not None)
        y = y.to(torch.int64)
        target = None if target is None else target.to(torch.int64)
        gen = make_generator(self.seed, x.device)
        with ModelGuard(model):
            counter = Counter(model)
            x_ret, success = _restarts(counter, self.threat, x, y, target, target, gen, self.restarts, self)
        return finish(self.threat, x, x_ret, success, counter)


def _restarts(counter: Counter, threat: LpBall, x: Tensor, y: Tensor, loss_target: Tensor | None,
              success_target: Tensor | None, gen: torch.Generator, restarts: int, cfg,
              active: Tensor | None = None, state: tuple[Tensor, Tensor, Tensor] | None = None,
              ) -> tuple[Tensor, Tensor]:
    """Restarts of APGD on the unbroken points; keeps per sample the first adversarial point,
    or else the highest-loss one. ``state`` (x_ret, success, best_loss) carries across calls."""
    n = x.shape[0]
    if state is None:
        state = (x.detach().clone(), torch.zeros(n, dtype=torch.bool, device=x.device),
                 torch.full((n,), float("-inf"), device=x.device, dtype=x.dtype))
    x_ret, success, best_loss = state
    for _ in range(restarts):
        todo = ~success if active is None else (~success & active)
        idx = todo.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        lt = None if loss_target is None else loss_target[idx]
        stt = None if success_target is None else success_target[idx]
        xb, lb, succ, adv = _apgd_points(
            counter, threat, x[idx], y[idx], lt, stt, gen, steps=cfg.steps, loss=cfg.loss, rho=cfg.rho,
            momentum=cfg.momentum, eot_iter=cfg.eot_iter, early_stop=cfg.early_stop, large_reps=cfg.large_reps)
        better = ~succ & (lb > best_loss[idx])
        x_ret[idx[better]] = xb[better]
        best_loss[idx[better]] = lb[better]
        x_ret[idx[succ]] = adv[succ]
        success[idx[succ]] = True
    return x_ret, success


@dataclass(frozen=True)
class APGDT:
    """APGD-T: targeted APGD against each of the ``n_target_classes`` most likely other classes
    of the clean prediction in turn, on the targeted DLR loss (AutoAttack's APGD-T).

    A point counts as broken once misclassified (as any class); each later target class runs
    only on the points still unbroken. Arguments as for :class:`APGD`, plus:

    Args:
        n_target_classes: how many of the top other classes to target (9 in AutoAttack;
            capped at the model's number of classes minus 1).
        restarts: runs per target class.
    """

    threat: LpBall
    n_target_classes: int = 9
    loss: str = "dlr"
    steps: int = 100
    restarts: int = 1
    rho: float = 0.75
    momentum: float = 0.75
    eot_iter: int = 1
    large_reps: bool = False
    early_stop: bool = True
    seed: int | None = 0

    def __post_init__(self) -> None:
        _check_common(self)
        check_positive_int(self.n_target_classes, "n_target_classes")

    @property
    def name(self) -> str:
        r = f"x{self.restarts}" if self.restarts > 1 else ""
        return "APGD-T" + ("" if self.loss == "dlr" else f"-{self.loss.upper()}") + r

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """Attack a batch; shapes as for :class:`APGD`. With an explicit ``target``, one
        targeted run per restart against it (success = reaching the target)."""
        n_classes = prepare(model, x, y, target)
        _need_classes(self.loss, n_classes, True)
        y = y.to(torch.int64)
        gen = make_generator(self.seed, x.device)
        with ModelGuard(model):
            counter = Counter(model)
            if target is not None:
                target = target.to(torch.int64)
                x_ret, success = _restarts(counter, self.threat, x, y, target, target, gen, self.restarts, self)
                return finish(self.threat, x, x_ret, success, counter)
            clean = counter.logits(x)
            k = n_classes - 1 if rejects(model) else n_classes  # a "reject" column is never a target
            order = clean[:, :k].argsort(dim=1, descending=True)
            n = x.shape[0]
            state = (x.detach().clone(), clean.argmax(dim=1) != y,
                     torch.full((n,), float("-inf"), device=x.device, dtype=x.dtype))
            for r in range(1, min(self.n_target_classes, k - 1) + 1):
                # The r-th most likely class other than the top one; when the top one is not y
                # the point is already broken and never attacked.
                tgt = order[:, r]
                x_ret, success = _restarts(counter, self.threat, x, y, tgt, None, gen, self.restarts, self,
                                           state=state)
                state = (x_ret, success, state[2])
        return finish(self.threat, x, state[0], state[1], counter)
