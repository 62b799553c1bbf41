"""The walk both decision-based attacks share (``attacks.decision``): per-point state of a
batch moving along the decision boundary, the search for a misclassified start, the binary
search back to the boundary, and the packaging of the closest point found."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from robustlab.attacks._blackbox import (
    Queries,
    QueryBudgetExceeded,
    budget_stop,
    check_blackbox_inputs,
    check_labels,
)
from robustlab.attacks.base import ModelGuard, make_generator
from robustlab.results import AttackResult
from robustlab.threats import LpBall
from robustlab.validation import check_inputs, check_nonneg_float, check_positive_int

def _bshape(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


class _Walk:
    """What the decision attacks share: the adversarial criterion, the budget, the starting
    points and the binary search to the boundary."""

    def __init__(self, attack, q: Queries, x: Tensor, y: Tensor, target: Tensor | None, norm: str) -> None:
        self.attack = attack
        self.q = q
        self.x = x
        self.y = y
        self.target = target
        self.norm = norm
        self.geom = LpBall(norm, 0.0)  # type: ignore[arg-type]
        self.n = x.shape[0]
        self.dim = x[0].numel()
        dev = x.device
        self.adv = x.clone()  # current boundary point (valid where found)
        self.found = torch.zeros(self.n, dtype=torch.bool, device=dev)
        self.dist = torch.full((self.n,), math.inf, device=dev, dtype=x.dtype)
        self.best = x.clone()  # closest adversarial point seen (valid where found)
        self.best_dist = torch.full((self.n,), math.inf, device=dev, dtype=x.dtype)
        self.clean_pred = torch.full((self.n,), -1, dtype=torch.int64, device=dev)

    def room(self, idx: Tensor) -> Tensor:
        return self.attack.max_queries - self.q.per_sample[idx]

    def is_adv(self, pts: Tensor, idx: Tensor) -> Tensor:
        pred = self.q.labels(pts, idx)
        return pred == self.target[idx] if self.target is not None else pred != self.y[idx]

    def keep_best(self, idx: Tensor, pts: Tensor) -> None:
        if idx.numel() == 0:
            return
        d = self.geom.distance(pts, self.x[idx])
        better = d < self.best_dist[idx]
        self.best[idx[better]] = pts[better]
        self.best_dist[idx[better]] = d[better]

    # -- start --------------------------------------------------------------------------------
    def start(self, starting_points: Tensor | None, init: str, tries: int, gen: torch.Generator) -> Tensor:
        """Clean query, then a starting point for every point that is not already misclassified.
        Returns the (N,) bool mask of clean-misclassified points."""
        x, n = self.x, self.n
        everyone = torch.arange(n, device=x.device)
        pred = self.q.labels(x, everyone)
        check_labels(self.y, self.target, self.q.n_classes)
        self.clean_pred = pred
        clean_adv = pred == self.target if self.target is not None else pred != self.y
        self.found |= clean_adv
        self.adv[clean_adv] = x[clean_adv]
        self.dist[clean_adv] = 0.0
        self.best_dist[clean_adv] = 0.0
        need = ~clean_adv
        cand = torch.zeros_like(x)
        have = torch.zeros(n, dtype=torch.bool, device=x.device)
        if starting_points is not None and bool(need.any()):
            idx = need.nonzero().squeeze(1)
            ok = self.is_adv(starting_points[idx], idx)
            cand[idx[ok]] = starting_points[idx[ok]]
            have[idx[ok]] = True
        def from_batch() -> None:
            rest = (need & ~have).nonzero().squeeze(1)
            if rest.numel() == 0:
                return
            # Inputs of this batch whose (already known) label is adversarial for point i.
            lab = self.y[rest] if self.target is None else self.target[rest]
            ok = (pred[None, :] != lab[:, None]) if self.target is None else (pred[None, :] == lab[:, None])
            d = torch.cdist(x[rest].flatten(1), x.flatten(1)) if self.norm == "l2" else \
                (x[rest].flatten(1)[:, None] - x.flatten(1)[None]).abs().amax(dim=2)
            d = d.masked_fill(~ok, math.inf)
            dmin, j = d.min(dim=1)
            got = torch.isfinite(dmin)
            cand[rest[got]] = x[j[got]]
            have[rest[got]] = True

        def from_noise() -> None:
            for _ in range(tries):
                rest = (need & ~have & (self.q.per_sample < self.attack.max_queries)).nonzero().squeeze(1)
                if rest.numel() == 0:
                    break
                noise = torch.rand((rest.numel(),) + tuple(x.shape[1:]), generator=gen, device=x.device,
                                   dtype=x.dtype)
                ok = self.is_adv(noise, rest)
                cand[rest[ok]] = noise[ok]
                have[rest[ok]] = True

        # Noise first (measured: better distances after 5k queries than a batch neighbour,
        # which tends to start in a worse region), except for targeted attacks, where noise
        # rarely lands in the target class.
        if init == "batch" or self.target is not None:
            from_batch()
            from_noise()
        else:
            from_noise()
            from_batch()
        idx = (need & have).nonzero().squeeze(1)
        if idx.numel():
            self.found[idx] = True
            self.adv[idx] = cand[idx]
            self.keep_best(idx, cand[idx])
            self.dist[idx] = self.geom.distance(cand[idx], x[idx])
            self.to_boundary(idx, self.default_tol(idx))
        return clean_adv

    def default_tol(self, idx: Tensor) -> Tensor:
        theta = self.theta
        if self.norm == "l2":
            return torch.full((idx.numel(),), theta, device=self.x.device, dtype=self.x.dtype)
        return torch.clamp(self.dist[idx] * theta, max=theta)

    @property
    def theta(self) -> float:
        g = getattr(self.attack, "gamma", 1.0)
        return g / (self.dim ** 1.5) if self.norm == "l2" else g / (self.dim ** 2)

    def _blend(self, idx: Tensor, a: Tensor) -> Tensor:
        x, adv = self.x[idx], self.adv[idx]
        if self.norm == "l2":
            a = _bshape(a, x)
            return (1 - a) * x + a * adv
        a = _bshape(a, x)
        return torch.minimum(torch.maximum(adv, x - a), x + a)

    def to_boundary(self, idx: Tensor, tol: Tensor) -> None:
        """Binary search between the clean input and ``adv`` (adversarial) for points ``idx``:
        ``adv`` becomes the adversarial end of the final bracket (l2: blend factor; linf: the
        clip radius; the bracket ends below ``tol``)."""
        if idx.numel() == 0:
            return
        if self.norm == "l2":
            hi = torch.ones(idx.numel(), device=self.x.device, dtype=self.x.dtype)
        else:
            hi = self.geom.distance(self.adv[idx], self.x[idx])
        lo = torch.zeros_like(hi)
        while True:
            go = ((hi - lo) > tol) & (self.room(idx) > 0)
            if not bool(go.any()):
                break
            sub = go.nonzero().squeeze(1)
            mid = (hi[sub] + lo[sub]) / 2
            pts = self._blend(idx[sub], mid)
            ok = self.is_adv(pts, idx[sub])
            hi[sub[ok]] = mid[ok]
            lo[sub[~ok]] = mid[~ok]
        pts = self._blend(idx, hi)
        # hi == 1 (l2) or the full radius (linf) is the old point itself, known adversarial;
        # any other hi was queried and found adversarial.
        self.adv[idx] = pts
        self.dist[idx] = self.geom.distance(pts, self.x[idx])
        self.keep_best(idx, pts)

    # -- result -------------------------------------------------------------------------------
    def result(self, eps: float | None, clean_adv: Tensor) -> AttackResult:
        x = self.x
        if eps is None:
            success = self.found.clone()
            x_adv = torch.where(_bshape(self.found, x), self.best, x)
        else:
            within = self.found & (self.best_dist <= eps)
            success = within | clean_adv
            x_adv = torch.where(_bshape(within, x), self.best, x)
        x_adv = x_adv.detach()
        return AttackResult(x_adv=x_adv, success=success, distance=self.geom.distance(x_adv, x),
                            forward_calls=self.q.total, backward_calls=0, queries=self.q.per_sample.clone())


def _check_common(attack) -> None:
    check_positive_int(attack.max_queries, "max_queries")
    if attack.eps is not None:
        check_nonneg_float(attack.eps, "eps")
    if attack.init not in ("batch", "noise"):
        raise ValueError(f"init: expected 'batch' or 'noise', got {attack.init!r}")
    check_positive_int(attack.init_tries, "init_tries", minimum=0)


def _check_call(model: object, x: Tensor, y: Tensor, target: Tensor | None, starting_points: Tensor | None):
    check_blackbox_inputs(model, x, y, target)
    if starting_points is not None:
        check_inputs(starting_points, name_x="starting_points")
        if starting_points.shape != x.shape:
            raise ValueError(f"starting_points: expected shape {tuple(x.shape)} like x, got {tuple(starting_points.shape)}")
        starting_points = starting_points.to(x)
    return y.to(torch.int64), None if target is None else target.to(torch.int64), starting_points



def _run_walk(attack, step: Callable[["_Walk", torch.Generator], None], model: object, x: Tensor, y: Tensor,
              target: Tensor | None, starting_points: Tensor | None) -> AttackResult:
    """The driver HopSkipJump and Boundary share: check the call, find adversarial starts, let
    ``step`` walk towards the clean inputs until the budget is spent, package the result."""
    y, target, starting_points = _check_call(model, x, y, target, starting_points)
    gen = make_generator(attack.seed, x.device)
    with ModelGuard(model):
        q = Queries(model, x.shape[0], x.device)
        w = _Walk(attack, q, x, y, target, attack.norm)
        clean_adv = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        try:
            clean_adv = w.start(starting_points, attack.init, attack.init_tries, gen)
            step(w, gen)
        except QueryBudgetExceeded as e:
            budget_stop(attack.name, e, q)
    return w.result(attack.eps, clean_adv)
