"""Decision-based attacks: they see only the predicted label. HopSkipJump (Chen, Jordan and
Wainwright 2020; L2 and Linf) and the Boundary attack (Brendel, Rauber and Bethge 2018; L2).

Both are minimum-norm attacks: they start from a misclassified point, walk along the decision
boundary towards the clean input, and return the closest misclassified point found. Given
``eps``, a point stops as soon as it is within ``eps``, and a point that never gets there is
returned unchanged (clean) and counted a failure, so every returned point lies in the ball.

Batched: all points of a batch move in lock-step, each phase querying only the points that
still need it; the per-sample queries are counted, and no point goes past ``max_queries``.

Starting points: ``starting_points`` if given; then uniform noise (up to ``init_tries`` queries)
and the nearest other input of the same batch whose label (from the clean query, already paid
for) is adversarial for this point; noise first with ``init="noise"`` (the default, untargeted),
the batch neighbour first with ``init="batch"`` or a target. A binary search between the clean
input and the start then finds the boundary.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from robustlab.attacks._walk import _bshape, _check_call, _check_common, _run_walk, _Walk  # noqa: F401
from robustlab.results import AttackResult
from robustlab.threats import LpBall, parse_threat
from robustlab.validation import check_nonneg_float, check_positive_int

_CHUNK = 16384  # inputs per model call in the gradient estimate


def _walk_threat(threat: LpBall | str | None, norm: str | None, eps: float | None, norms: tuple[str, ...],
                 who: str) -> LpBall | str | None:
    """The stopping ball of a boundary walk from the ``threat`` argument, or from the keywords
    ``norm=``/``eps=`` of release 0.1 (still accepted, with a DeprecationWarning)."""
    if norm is not None or eps is not None:
        if threat is not None:
            raise TypeError(f"threat: pass the threat alone, not together with the old norm=/eps= keywords of {who}")
        warnings.warn(f"{who}(norm=..., eps=...) is deprecated: pass a threat, e.g. {who}('{norm or 'l2'}:{eps or 1.0}') "
                      f"or {who}(LpBall('{norm or 'l2'}', eps)); a bare norm ('{norm or 'l2'}') runs to the budget",
                      DeprecationWarning, stacklevel=3)
        threat = norm or "l2" if eps is None else LpBall(norm or "l2", eps)  # type: ignore[arg-type]
    if threat is None:
        return None
    if isinstance(threat, str) and ":" not in threat:
        if threat not in norms:
            raise ValueError(f"norm: {who} walks in {' or '.join(norms)}, got {threat!r}")
        return threat
    ball = parse_threat(threat) if isinstance(threat, str) else threat
    if not isinstance(ball, LpBall) or ball.norm not in norms:
        raise ValueError(f"threat: {who} walks in an {' or '.join(norms)} ball, got {getattr(ball, 'spec', lambda: ball)()}")
    return ball


def _set_fields(attack: object, threat: LpBall | str | None, **values: object) -> None:
    object.__setattr__(attack, "threat", threat)
    for k, v in values.items():
        object.__setattr__(attack, k, v)


def _norm_of(threat: LpBall | str | None) -> str:
    return "l2" if threat is None else threat if isinstance(threat, str) else threat.norm


def _eps_of(threat: LpBall | str | None) -> float | None:
    return None if threat is None or isinstance(threat, str) else float(threat.eps)


def _legacy_config(attack: object) -> dict[str, object]:
    """Release 0.1's fields: ``norm`` first, ``eps`` in place of ``threat``."""
    fields = {f.name: getattr(attack, f.name) for f in dataclasses.fields(attack)}  # type: ignore[arg-type]
    del fields["threat"]
    return {"norm": getattr(attack, "norm"), **fields, "eps": getattr(attack, "eps")}


@dataclass(frozen=True)
class HopSkipJump:
    """HopSkipJump (Chen et al. 2020): decision-based, minimum-norm, L2 or Linf.

    Each iteration estimates the boundary's normal from the labels of ``init_evals *
    sqrt(t)`` random probes around the current boundary point, steps along it (geometric step
    search: halve until the point is adversarial again) and binary-searches back to the
    boundary.

    Args:
        threat: the ball to reach (``LpBall`` or a spec such as ``"l2:2.0"``, ``"linf:0.1"``): a
            point stops once inside it, and a point that never gets there is returned clean and
            counted a failure. A bare norm (``"l2"``, ``"linf"``) or None (L2) runs each point to
            its budget and returns the closest adversarial point found (minimum norm).
        max_queries: per-sample query budget, every query counted (clean input included).
        steps: iterations (40 in the paper).
        gamma: sets the binary-search tolerance and the probe radius (1 in the paper).
        init_evals: probes in the first gradient estimate (100); t-th: init_evals * sqrt(t).
        max_evals: cap on the probes of one estimate (10,000).
        init: "noise" (uniform noise first, then the nearest adversarial input of the same
            batch) or "batch" (that input first); targeted attacks always try the batch first.
        init_tries: uniform-noise queries per point when looking for a start.
        seed: seed of the probes and noise.
    """

    threat: LpBall | str | None = None
    max_queries: int = 10000
    steps: int = 40
    gamma: float = 1.0
    init_evals: int = 100
    max_evals: int = 10000
    init: str = "noise"
    init_tries: int = 100
    seed: int | None = 0

    def __init__(self, threat: LpBall | str | None = None, *, max_queries: int = 10000, steps: int = 40,
                 gamma: float = 1.0, init_evals: int = 100, max_evals: int = 10000, init: str = "noise",
                 init_tries: int = 100, seed: int | None = 0, norm: str | None = None,
                 eps: float | None = None) -> None:
        _set_fields(self, _walk_threat(threat, norm, eps, ("l2", "linf"), "HopSkipJump"), max_queries=max_queries,
                    steps=steps, gamma=gamma, init_evals=init_evals, max_evals=max_evals, init=init,
                    init_tries=init_tries, seed=seed)
        _check_common(self)
        check_positive_int(self.steps, "steps")
        check_positive_int(self.init_evals, "init_evals")
        check_positive_int(self.max_evals, "max_evals")
        if check_nonneg_float(self.gamma, "gamma") <= 0:
            raise ValueError(f"gamma: expected a number > 0, got {self.gamma!r}")

    @property
    def name(self) -> str:
        return f"HopSkipJump-{self.norm}-{self.max_queries}"

    norm = property(lambda self: _norm_of(self.threat), doc='"l2" or "linf": the walk\'s norm.')
    eps = property(lambda self: _eps_of(self.threat), doc="The stopping radius, or None (minimum norm).")

    def identity_config(self) -> dict[str, object]:
        """The run-identity fields as release 0.1 wrote them (``norm``, ``eps``), so runs resume."""
        return _legacy_config(self)

    def __call__(self, model: object, x: Tensor, y: Tensor, *, target: Tensor | None = None,
                 starting_points: Tensor | None = None) -> AttackResult:
        """Attack a batch.

        Args:
            model: anything that answers labels: ``LabelOnly``, ``HTTPModel``, a score callable
                or an nn.Module (arg-max of its outputs).
            x: (N, ...) clean inputs in [0, 1]; y: (N,) int64 true labels.
            target: (N,) target classes for a targeted attack, or None.
            starting_points: (N, ...) optional adversarial starts (e.g. target-class images).
        """
        return _run_walk(self, self._iterate, model, x, y, target, starting_points)

    def _iterate(self, w: _Walk, gen: torch.Generator) -> None:
        x, dim = w.x, w.dim
        theta = w.theta
        reserve = 2 + int(math.ceil(math.log2(max(1.0 / theta, 2.0))))  # a step and a binary search
        done = ~w.found | (w.dist == 0)
        for t in range(1, self.steps + 1):
            if self.eps is not None:
                done |= w.best_dist <= self.eps
            idx = (~done & (w.room(torch.arange(w.n, device=x.device)) > reserve)).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            # Probes: init_evals * sqrt(t), capped, and cut to what the budget leaves.
            b_t = min(int(self.init_evals * math.sqrt(t)), self.max_evals)
            b = torch.clamp(w.room(idx) - reserve, max=b_t)
            if t == 1:
                delta = torch.full((idx.numel(),), 0.1, device=x.device, dtype=x.dtype)
            else:
                scale = math.sqrt(dim) * theta if self.norm == "l2" else dim * theta
                delta = w.dist[idx] * scale
            v = self._estimate(w, idx, b, delta, gen)
            if self.norm == "l2":
                upd = v / _bshape(v.flatten(1).norm(dim=1).clamp_min(1e-12), v)
            else:
                upd = v.sign()
            # Geometric step search from dist / sqrt(t), halving until adversarial.
            step = w.dist[idx] / math.sqrt(t)
            pending = torch.ones(idx.numel(), dtype=torch.bool, device=x.device)
            new = w.adv[idx].clone()
            for _ in range(30):
                pending &= w.room(idx) > 0
                if not bool(pending.any()):
                    break
                sub = pending.nonzero().squeeze(1)
                cand = (w.adv[idx[sub]] + _bshape(step[sub], upd) * upd[sub]).clamp(0.0, 1.0)
                ok = w.is_adv(cand, idx[sub])
                new[sub[ok]] = cand[ok]
                pending[sub[ok]] = False
                step[sub[~ok]] /= 2
            moved = ~pending
            mi = idx[moved]
            w.adv[mi] = new[moved]
            w.dist[mi] = w.geom.distance(new[moved], x[mi])
            w.keep_best(mi, new[moved])
            w.to_boundary(mi, w.default_tol(mi))
            done[idx[pending]] |= w.room(idx[pending]) <= reserve

    def _estimate(self, w: _Walk, idx: Tensor, b: Tensor, delta: Tensor, gen: torch.Generator) -> Tensor:
        """Monte-Carlo estimate of the boundary normal at ``w.adv[idx]`` from ``b[i]`` probes each
        (labels only), with the mean-baseline of the paper; probes clipped to the box."""
        x = w.x
        out = torch.zeros((idx.numel(),) + tuple(x.shape[1:]), device=x.device, dtype=x.dtype)
        bmax = int(b.max())
        if bmax <= 0:
            return out
        per = max(1, _CHUNK // bmax)
        for s in range(0, idx.numel(), per):
            ii = idx[s:s + per]
            bi, di = b[s:s + per], delta[s:s + per]
            m = ii.numel()
            u = torch.randn((m, bmax) + tuple(x.shape[1:]), generator=gen, device=x.device, dtype=x.dtype)
            u = u / u.flatten(2).norm(dim=2).clamp_min(1e-12).reshape((m, bmax) + (1,) * (x.dim() - 1))
            base = w.adv[ii][:, None]
            dd = di.reshape((m, 1) + (1,) * (x.dim() - 1))
            pts = (base + dd * u).clamp(0.0, 1.0)
            u = (pts - base) / dd
            valid = torch.arange(bmax, device=x.device)[None, :] < bi[:, None]  # (m, bmax)
            owner = ii[:, None].expand(m, bmax)[valid]
            ok = w.is_adv(pts[valid], owner)
            phi = torch.zeros((m, bmax), device=x.device, dtype=x.dtype)
            phi[valid] = ok.to(x.dtype) * 2 - 1
            cnt = bi.clamp_min(1).to(x.dtype)
            mean = phi.sum(dim=1) / cnt
            mixed = (mean.abs() < 1)[:, None]
            # Subtracting the mean cuts the variance, unless every probe agreed.
            phi = torch.where(valid & mixed, phi - mean[:, None], phi)
            phi = phi * valid
            out[s:s + per] = (phi.reshape((m, bmax) + (1,) * (x.dim() - 1)) * u).sum(dim=1) / _bshape(cnt, u[:, 0])
        return out


@dataclass(frozen=True)
class Boundary:
    """The Boundary attack (Brendel et al. 2018): decision-based random walk, L2.

    From a misclassified start, each step proposes a random move along the sphere around the
    clean input (``spherical_step`` times the current distance); where that stays adversarial
    it adds a move towards the clean input (``source_step`` times the distance), and keeps it if
    the label stays adversarial. Each step size adapts to its own acceptance rate over the last
    ``adapt_every`` steps (grow above 1/2, shrink below 1/5). One or two queries per step.

    Args:
        threat: an L2 ball to reach (``LpBall`` or ``"l2:2.0"``), as for :class:`HopSkipJump`;
            ``"l2"`` or None runs to the budget (minimum norm).
        max_queries: per-sample query budget (clean input included).
        spherical_step, source_step: initial relative step sizes.
        step_adaptation: factor by which the steps grow (rate > 1/2) or shrink (rate < 1/5).
        adapt_every: steps between adaptations.
        init, init_tries, seed: as for :class:`HopSkipJump`; the default here is "batch", since
            the walk is slow and a start close to the clean input matters most (measured on 10
            points: median L2 3.06 after 1000 queries, 4.95 after 500 from noise).
    """

    threat: LpBall | str | None = None
    max_queries: int = 5000
    spherical_step: float = 0.01
    source_step: float = 0.01
    step_adaptation: float = 1.5
    adapt_every: int = 10
    init: str = "batch"
    init_tries: int = 100
    seed: int | None = 0

    def __init__(self, threat: LpBall | str | None = None, *, max_queries: int = 5000, spherical_step: float = 0.01,
                 source_step: float = 0.01, step_adaptation: float = 1.5, adapt_every: int = 10,
                 init: str = "batch", init_tries: int = 100, seed: int | None = 0, eps: float | None = None) -> None:
        _set_fields(self, _walk_threat(threat, None, eps, ("l2",), "Boundary"), max_queries=max_queries,
                    spherical_step=spherical_step, source_step=source_step, step_adaptation=step_adaptation,
                    adapt_every=adapt_every, init=init, init_tries=init_tries, seed=seed)
        _check_common(self)
        for name in ("spherical_step", "source_step"):
            v = check_nonneg_float(getattr(self, name), name)
            if not 0 < v < 1:
                raise ValueError(f"{name}: expected a number in (0, 1), got {v}")
        if check_nonneg_float(self.step_adaptation, "step_adaptation") <= 1:
            raise ValueError(f"step_adaptation: expected a number > 1, got {self.step_adaptation}")
        check_positive_int(self.adapt_every, "adapt_every")

    @property
    def name(self) -> str:
        return f"Boundary-{self.max_queries}"

    norm = property(lambda self: "l2", doc="Always L2.")
    eps = property(lambda self: _eps_of(self.threat), doc="The stopping radius, or None (minimum norm).")

    def identity_config(self) -> dict[str, object]:
        """The run-identity fields as release 0.1 wrote them (``eps``), so runs resume."""
        return {k: v for k, v in _legacy_config(self).items() if k != "norm"}

    def __call__(self, model: object, x: Tensor, y: Tensor, *, target: Tensor | None = None,
                 starting_points: Tensor | None = None) -> AttackResult:
        """Attack a batch; arguments as for :class:`HopSkipJump`."""
        return _run_walk(self, self._walk, model, x, y, target, starting_points)

    def _walk(self, w: _Walk, gen: torch.Generator) -> None:
        x, n = w.x, w.n
        sph = torch.full((n,), self.spherical_step, device=x.device, dtype=x.dtype)
        src = torch.full((n,), self.source_step, device=x.device, dtype=x.dtype)
        # Acceptance counts since the last adaptation: spherical proposals, and full proposals.
        s_ok, s_try = torch.zeros(n, device=x.device), torch.zeros(n, device=x.device)
        f_ok, f_try = torch.zeros(n, device=x.device), torch.zeros(n, device=x.device)
        everyone = torch.arange(n, device=x.device)
        f = self.step_adaptation
        while True:
            live = w.found & (w.dist > 0) & (w.room(everyone) > 0)
            if self.eps is not None:
                live &= w.best_dist > self.eps
            idx = live.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            xi, adv = x[idx], w.adv[idx]
            d = adv - xi
            r = d.flatten(1).norm(dim=1)
            dn = d / _bshape(r.clamp_min(1e-12), d)
            eta = torch.randn(adv.shape, generator=gen, device=x.device, dtype=x.dtype)
            eta = eta - _bshape((eta * dn).flatten(1).sum(dim=1), eta) * dn  # orthogonal to d
            eta = eta / _bshape(eta.flatten(1).norm(dim=1).clamp_min(1e-12), eta) * _bshape(sph[idx] * r, eta)
            on_sphere = d + eta
            on_sphere = on_sphere * _bshape(r / on_sphere.flatten(1).norm(dim=1).clamp_min(1e-12), d)
            # First the move along the sphere alone (its success rate tunes the spherical step),
            # then, where that stayed adversarial, the move towards the clean input as well.
            s_ok_now = w.is_adv((xi + on_sphere).clamp(0.0, 1.0), idx)
            s_try[idx] += 1
            s_ok[idx] += s_ok_now.float()
            go = s_ok_now & (w.room(idx) > 0)
            sub = go.nonzero().squeeze(1)
            if sub.numel():
                ii = idx[sub]
                cand = (xi[sub] + on_sphere[sub] * _bshape(1 - src[ii], d[sub])).clamp(0.0, 1.0)
                ok = w.is_adv(cand, ii)
                f_try[ii] += 1
                f_ok[ii] += ok.float()
                cd = w.geom.distance(cand, xi[sub])
                ok &= cd < w.dist[ii]
                acc = ii[ok]
                w.adv[acc] = cand[ok]
                w.dist[acc] = cd[ok]
                w.keep_best(acc, cand[ok])
            due = idx[s_try[idx] >= self.adapt_every]
            if due.numel():
                rate = s_ok[due] / s_try[due]
                sph[due] = torch.where(rate > 0.5, sph[due] * f, torch.where(rate < 0.2, sph[due] / f, sph[due]))
                sph[due] = sph[due].clamp(1e-7, 0.5)
                tried = f_try[due]
                frate = f_ok[due] / tried.clamp_min(1)
                up, down = (tried > 0) & (frate > 0.5), (tried > 0) & (frate < 0.2)
                src[due] = torch.where(up, src[due] * f, torch.where(down, src[due] / f, src[due])).clamp(1e-7, 0.5)
                s_ok[due] = 0
                s_try[due] = 0
                f_ok[due] = 0
                f_try[due] = 0
