"""The self-audit of the ``fast`` preset: re-run the full ``standard`` ensemble on a random
sample of the points ``fast`` left robust, and warn if any of them breaks.

``fast`` (``attacks.fast.FastEval``) saves most of AutoAttack's budget by giving up early on
points whose margin is large and stable, and by running Square only where margins are small.
Those shortcuts are judgements; this check measures, on every evaluation, how often they were
wrong. With a sample of ``fraction`` of the robust points, a miss rate ``p`` among the robust
points is caught with probability 1 - (1 - p)^k (k sampled points): a shortcut that overstates
robust accuracy by a whole point on a 1000-point evaluation of a 90%-robust model (p ~ 1.1%,
k = 45) is caught about 40% of the time per run, one of 2 pp about 65%; an exact evaluation
never warns. The check reports the estimated overstatement (misses / sampled x robust fraction).

    d = audit_fast(model, x, y, threat, report.robust, seed=0)    # -> Diagnostic
    if d.status == "warn": ...

Cost: the standard ensemble on the sampled points (about AutoAttack's per-point cost times
``fraction`` of the robust points), counted per sample and reported in the Diagnostic.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

import torch
from torch import Tensor

from robustlab.attacks.base import Attack
from robustlab.evaluation.diagnostics import Diagnostic
from robustlab.models.access import predict
from robustlab.threats import LpBall, check_lp

NAME = "fast_audit"
AUDIT_FRACTION = 0.05  # share of the points fast left robust that the audit re-attacks
AUDIT_MIN_POINTS = 5  # at least this many (or all robust points, if fewer)


def _reference(threat: LpBall) -> list[Attack]:
    from robustlab.evaluation.presets import ensemble

    return ensemble("standard", threat)


def sample_robust(robust: Tensor, fraction: float, seed: int, min_points: int = AUDIT_MIN_POINTS) -> Tensor:
    """Sorted indices of a seeded random sample of ``ceil(fraction * #robust)`` (at least
    ``min_points``, at most all) of the points where ``robust`` (N,) bool is True."""
    idx = robust.nonzero().squeeze(1).cpu()
    if idx.numel() == 0:
        return idx
    k = min(idx.numel(), max(min_points, math.ceil(fraction * idx.numel())))
    g = torch.Generator().manual_seed(int(seed))
    return idx[torch.randperm(idx.numel(), generator=g)[:k]].sort().values


def audit_fast(
    model: object,
    x: Tensor,
    y: Tensor,
    threat: LpBall,
    robust: Tensor,
    *,
    fraction: float = AUDIT_FRACTION,
    seed: int = 0,
    min_points: int = AUDIT_MIN_POINTS,
    attacks: Sequence[Attack] | None = None,
) -> Diagnostic:
    """Re-attack a random ``fraction`` of the points a fast evaluation left robust.

    Args:
        model: the evaluated model (success is decided by it at the returned points).
        x: (N, C, H, W) inputs in [0, 1] of the evaluation; y: (N,) int64 labels.
        threat: the evaluation's threat.
        robust: (N,) bool, the points the fast evaluation left robust (``EvalReport.robust``).
        fraction: share of the robust points to re-attack, in (0, 1].
        seed: seeds the sample and the reference attacks.
        min_points: sample at least this many robust points (all of them if fewer).
        attacks: the reference attacks (default: the ``standard`` ensemble for ``threat``).

    Returns:
        Diagnostic "fast_audit": "warn" if the reference broke any sampled point; ``figure`` is
        the share of sampled points it broke; ``details`` holds the sampled and broken indices
        and the estimated overstatement of robust accuracy in percentage points.
    """
    check_lp(threat)
    if not isinstance(robust, Tensor) or robust.dtype != torch.bool or robust.shape != (x.shape[0],):
        raise ValueError(f"robust: expected a ({x.shape[0]},) bool tensor, got "
                         f"{getattr(robust, 'dtype', type(robust).__name__)} {tuple(getattr(robust, 'shape', ()))}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction: expected a number in (0, 1], got {fraction!r}")
    if isinstance(min_points, bool) or not isinstance(min_points, int) or min_points < 1:
        raise ValueError(f"min_points: expected an int >= 1, got {min_points!r}")
    t0 = time.perf_counter()
    reference = list(attacks) if attacks is not None else _reference(threat)
    sample = sample_robust(robust, fraction, seed, min_points)
    k = int(sample.numel())
    if k == 0:
        return Diagnostic(NAME, "pass", 0.0, "no point was left robust: nothing to audit",
                          time.perf_counter() - t0, details={"sampled": [], "broken": []})
    idx = sample.to(x.device)
    xs, ys = x[idx], y[idx].to(torch.int64)
    broken = torch.zeros(k, dtype=torch.bool, device=x.device)
    fwd = bwd = 0
    for j, attack in enumerate(reference):
        todo = (~broken).nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        if dataclasses.is_dataclass(attack) and any(f.name == "seed" for f in dataclasses.fields(attack)):
            attack = dataclasses.replace(attack, seed=seed * 1_000_003 + 7919 * j + 17)
        res = attack(model, xs[todo], ys[todo])  # type: ignore[operator]
        fwd += int(res.forward_calls) + int(todo.numel())
        bwd += int(res.backward_calls)
        x_adv = threat.project(res.x_adv.detach().to(xs.dtype), xs[todo])
        broken[todo[predict(model, x_adv) != ys[todo]]] = True
    n_broken = int(broken.sum())
    robust_frac = float(robust.float().mean())
    over_pp = 100.0 * n_broken / k * robust_frac
    names = ", ".join(str(getattr(a, "name", type(a).__name__)) for a in reference)
    if n_broken:
        expl = (f"the standard ensemble broke {n_broken} of {k} sampled points the fast evaluation left robust: "
                f"its robust accuracy is overstated by about {over_pp:.1f} pp; rerun with attacks='standard'")
    else:
        expl = f"the standard ensemble ({names}) broke none of {k} sampled points the fast evaluation left robust"
    return Diagnostic(NAME, "warn" if n_broken else "pass", n_broken / k, expl, time.perf_counter() - t0, fwd, bwd,
                      {"sampled": sample.tolist(), "broken": sample[broken.cpu()].tolist(),
                       "overstatement_pp": over_pp, "fraction": fraction, "reference": names})


__all__ = ["audit_fast", "sample_robust", "AUDIT_FRACTION", "AUDIT_MIN_POINTS", "NAME"]
