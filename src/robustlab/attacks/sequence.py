"""Attacks in order on the points still unbroken: the one loop the runner, the ensembles and the
diagnostics share.

Each attack gets the seed ``seed + 7919 * j`` (j its position), runs only on the points no
earlier attack broke, and its returned points are checked, never trusted: a point the threat
does not admit counts as a failure (with a warning), and success is decided by the ``judge``
(the deployed model) at the returned point with the one success rule of ``losses.py``.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from robustlab.attacks.losses import rejects
from robustlab.batch import Inputs, count, take
from robustlab.models.access import predict


def _step_hook(model: object, name: str, on_step: Callable[[str, int], None] | None):
    """A forward hook on an nn.Module that reports every forward pass (None when not needed)."""
    if on_step is None or not isinstance(model, torch.nn.Module):
        return None
    calls = [0]

    def hook(module: torch.nn.Module, inputs: object, output: object) -> None:
        calls[0] += 1
        on_step(name, calls[0])

    return model.register_forward_hook(hook)


def attack_name(attack: object) -> str:
    return str(getattr(attack, "name", type(attack).__name__))


def with_seed(attack: object, seed: int) -> object:
    """The attack with its ``seed`` field replaced (dataclass attacks with a seed), else itself."""
    if dataclasses.is_dataclass(attack) and any(f.name == "seed" for f in dataclasses.fields(attack)):
        return dataclasses.replace(attack, seed=seed)  # type: ignore[type-var]
    return attack


def judged_success(pred: Tensor, y: Tensor, target: Tensor | None, n_scores: int | None, reject: bool) -> Tensor:
    """(N,) bool from predicted labels: the success rule of ``losses.is_success`` on labels."""
    if target is not None:
        return pred == target
    ok = pred != y
    if reject and n_scores is not None:
        ok &= pred != n_scores - 1
    return ok


@dataclass
class AttackCost:
    attacked: int = 0
    broken: int = 0
    forward: int = 0
    backward: int = 0
    seconds: float = 0.0

    def row(self) -> tuple[int, int, int, int, float]:
        return (self.attacked, self.broken, self.forward, self.backward, self.seconds)


@dataclass
class Sequenced:
    """What ``run_in_order`` found, per sample (N,) and per attack."""

    broken_by: Tensor  # index of the first attack that broke the point, -1 where none did
    distance: Tensor  # float32, NaN where not broken
    adv_pred: Tensor  # the judge's prediction at the breaking point, -1 where not broken
    x_adv: list  # per attack: (indices it broke, their adversarial inputs)
    costs: list[AttackCost] = field(default_factory=list)
    judge_forward: int = 0  # the judge's re-classifications


def shrink_along(judge: object, x: Tensor, x_adv: Tensor, y: Tensor, target: Tensor | None, pred: Tensor,
                 n_scores: int | None, reject: bool, threat: object, steps: int) -> tuple[Tensor, Tensor, int]:
    """The closest point to ``x`` on the segment x -> x_adv that the judge still gets wrong.

    Bisection on t in (0, 1] (``steps`` halvings, t known to 2**-steps): every x + t (x_adv - x)
    lies in the ball and the box where x_adv does (both are convex and hold x). Forward passes
    only (``steps`` per point). Gives the report's accuracy-vs-eps curve real distances: PGD's
    Linf points sit on the ball's surface, so their own distance is eps for every point.

    Returns:
        (x_best (N, ...), pred_best (N,), forward passes spent).
    """
    n = x.shape[0]
    delta = x_adv - x
    shape = (n,) + (1,) * (x.dim() - 1)
    lo = torch.zeros(n, dtype=x.dtype, device=x.device)
    hi = torch.ones(n, dtype=x.dtype, device=x.device)
    best_pred = pred.clone()
    for _ in range(steps):
        mid = (lo + hi) / 2
        p = predict(judge, x + mid.view(shape) * delta).to(pred.device)
        ok = judged_success(p, y, target, n_scores, reject).to(x.device)
        hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
        best_pred = torch.where(ok.to(pred.device), p, best_pred)
    best = x + hi.view(shape) * delta
    keep = threat.admits(best, x).to(x.device)  # type: ignore[attr-defined]
    best = torch.where(keep.view(shape), best, x_adv)
    return best, torch.where(keep.to(pred.device), best_pred, pred), steps * n


def run_in_order(attacks: Sequence[object], attack_model: object, judge: object, x: Inputs, y: Tensor,
                 threat: object, seed: int | None, active: Tensor | None = None,
                 target: Tensor | None = None, keep_points: bool = False, shrink: int = 0,
                 on_step: Callable[[str, int], None] | None = None) -> Sequenced:
    """Run ``attacks`` in order on ``x`` (N, ...) against ``attack_model``; judge by ``judge``.

    Args:
        active: (N,) bool, the points to attack (default all); the others stay unbroken.
        seed: base seed (attack j gets ``seed + 7919 * j``); None keeps each attack's own.
        keep_points: also return each attack's adversarial points (for galleries, ensembles).
        shrink: bisection steps of ``shrink_along`` on each broken point (0: none), for a
            deterministic judge on tensor inputs; the distance and the kept point are then the
            shrunk ones. Its passes count as the judge's.
        on_step: called as ``on_step(attack_name, forward_calls_so_far)`` on every forward pass
            of an nn.Module ``attack_model`` during an attack (progress within a long attack).
    """
    n = count(x)
    dev = y.device
    active = torch.ones(n, dtype=torch.bool, device=dev) if active is None else active.clone().to(dev)
    broken_by = torch.full((n,), -1, dtype=torch.int64, device=dev)
    distance = torch.full((n,), float("nan"), dtype=torch.float32, device=dev)
    adv_pred = torch.full((n,), -1, dtype=torch.int64, device=dev)
    reject = rejects(judge)
    n_scores = getattr(judge, "n_scores", None)
    out = Sequenced(broken_by, distance, adv_pred, [])
    for j, attack in enumerate(attacks):
        cost = AttackCost()
        out.costs.append(cost)
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            out.x_adv.append((idx, None))
            continue
        t0 = time.time()
        xs, ys = take(x, idx), y[idx]
        ts = None if target is None else target[idx]
        a = attack if seed is None else with_seed(attack, seed + 7919 * j)
        refined = getattr(attack_model, "refine_calls", 0)
        hook = _step_hook(attack_model, attack_name(attack), on_step)
        try:
            res = a(attack_model, xs, ys) if ts is None else a(attack_model, xs, ys, target=ts)  # type: ignore[operator]
        finally:
            if hook is not None:
                hook.remove()
        refined = getattr(attack_model, "refine_calls", 0) - refined  # full-precision passes of Autocast
        cost.seconds = time.time() - t0
        x_adv = res.x_adv.detach().to(xs.dtype) if isinstance(xs, Tensor) else list(res.x_adv)
        admitted = threat.admits(x_adv, xs).to(dev)  # type: ignore[attr-defined]
        if not bool(admitted.all()):
            warnings.warn(f"{attack_name(attack)} returned {int((~admitted).sum())} points outside "
                          f"{threat.spec()}; they count as failures", stacklevel=3)  # type: ignore[attr-defined]
        if reject and n_scores is None:
            with torch.no_grad():
                scores = judge(x_adv)  # type: ignore[operator]
            n_scores = scores.shape[1]
            pred = scores.argmax(dim=1)
        else:
            pred = predict(judge, x_adv)
        out.judge_forward += count(xs)
        succ = judged_success(pred.to(dev), ys, ts, n_scores, reject) & admitted
        claimed = res.success.to(dev)
        if refined == 0 and attack_model is judge and bool((claimed & ~succ & admitted).any()):
            warnings.warn(f"{attack_name(attack)} claimed {int((claimed & ~succ & admitted).sum())} successes "
                          "the model does not confirm; counted as failures", stacklevel=3)
        b = idx[succ]
        active[b] = False
        broken_by[b] = j
        adv_pred[b] = pred.to(dev)[succ]
        if b.numel():
            picked = take(x_adv, succ.nonzero().squeeze(1))
            origin = take(xs, succ.nonzero().squeeze(1))
            if shrink and isinstance(picked, Tensor) and not reject and not getattr(judge, "random", False):
                picked, p_best, spent = shrink_along(judge, origin, picked, ys[succ], None if ts is None else ts[succ],
                                                     adv_pred[b], n_scores, reject, threat, shrink)
                adv_pred[b] = p_best.to(dev)
                out.judge_forward += spent
            distance[b] = threat.distance(picked, origin).to(dev, torch.float32)  # type: ignore[attr-defined]
            out.x_adv.append((b, picked if keep_points else None))
        else:
            out.x_adv.append((b, None))
        cost.attacked, cost.broken = int(idx.numel()), int(b.numel())
        cost.forward, cost.backward = int(res.forward_calls) + refined, int(res.backward_calls)
    return out


__all__ = ["run_in_order", "shrink_along", "Sequenced", "AttackCost", "attack_name", "with_seed", "judged_success"]
