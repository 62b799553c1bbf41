"""FAB, the Fast Adaptive Boundary attack (Croce & Hein 2020), Linf, L2 and L1.

FAB looks for the adversarial point closest to the clean input. At each step it linearises
the model at the current point, picks the class boundary that is nearest under that
linearisation (for FAB-T: the boundary to the target class), and projects onto that
hyperplane both the current point and the clean input, each projection the smallest step in
the threat's norm that stays in the [0, 1] box. The next point is a convex combination of the
two (weight alpha <= alpha_max on the clean side, which keeps the iterate close to the clean
input), extrapolated by eta past the hyperplane. Whenever the iterate is adversarial it is
recorded if it beats the closest one so far, and pulled back towards the clean input by the
factor beta.

``FAB`` (untargeted) needs the gradients of all K - 1 logit differences per step (K - 1
backward passes); ``FAB`` with ``n_target_classes`` (FAB-T, as in AutoAttack) runs against each
of the top other classes in turn with one backward pass per step. The pass that linearises a
new iterate also decides whether it is adversarial, and a pulled-back point keeps the
linearisation of the adversarial point it came from (offset moved along the gradient), so a
step costs one forward and the backward passes, against two forwards in the reference code.
Cost, counted: that per step on the points still in play, plus one forward on the clean points
for FAB-T's targets and one at the end of bounded mode.

Two modes:
- bounded (default): a point leaves as soon as an adversarial point within eps is found;
  points not broken are returned as the closest adversarial point found projected into the
  ball (checked by the model there), or the clean point. ``x_adv`` lies in the ball.
- minimal (``minimal=True``): every point runs all steps; ``distance`` is the distance of the
  closest adversarial point found, ``inf`` where none was found; ``x_adv`` is that point, which
  may lie outside the threat's eps (eps only sets the radius of random restarts).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.attacks.base import Counter, ModelGuard, finish, make_generator, prepare
from robustlab.attacks.deepfool import bounded_finish, logit_diff_grads, minimal_result
from robustlab.models.precision import approximate_decisions
from robustlab.results import AttackResult
from robustlab.threats import LpBall, check_lp
from robustlab.validation import check_nonneg_float, check_positive_int


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def _col(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


_BISECT_STEPS = 24  # brackets tau to 2^-24 of its range before the exact linear solve


def min_norm_box_step(p: Tensor, w: Tensor, c: Tensor, norm: str) -> Tensor:
    """Smallest step delta (N, D) in ``norm`` with <w, delta> = c and p + delta in [0, 1].

    p, w: (N, D) points in [0, 1] and hyperplane normals; c: (N,) offsets. Moving a coordinate
    against the sign of w never helps, so each coordinate moves by t_i >= 0 along sign(w_i),
    at most cap_i (the room to the box edge). Then
      linf: t_i = min(tau, cap_i);  l2: t_i = min(tau |w_i|, cap_i)  (KKT conditions),
    with tau the smallest value reaching c (bisection to the linear piece that holds it, then
    solved exactly on that piece); l1: the
    coordinates with the largest |w_i| are filled first. When the box makes c unreachable the
    step goes as far as the box allows.
    """
    sgn_c = torch.where(c < 0, -1.0, 1.0).to(w.dtype)
    w = w * sgn_c[:, None]
    c = c.abs()
    a = w.abs()
    cap = torch.where(w > 0, 1.0 - p, p).clamp_min(0)
    cap = torch.where(a > 0, cap, torch.zeros_like(cap))
    reach = (a * cap).sum(dim=1)
    infeasible = reach <= c
    if norm == "l1":
        a_s, order = a.sort(dim=1, descending=True)
        cap_s = cap.gather(1, order)
        g = (a_s * cap_s).cumsum(dim=1)
        k = (g < c[:, None]).sum(dim=1).clamp(max=a.shape[1] - 1)
        g_prev = torch.where(k > 0, g.gather(1, (k - 1).clamp_min(0)[:, None]).squeeze(1), torch.zeros_like(c))
        part = ((c - g_prev) / a_s.gather(1, k[:, None]).squeeze(1).clamp_min(1e-30))
        pos = torch.arange(a.shape[1], device=a.device)[None, :]
        t_s = torch.where(pos < k[:, None], cap_s, torch.zeros_like(cap_s))
        t_s = t_s.scatter(1, k[:, None], torch.minimum(part, cap_s.gather(1, k[:, None]).squeeze(1))[:, None])
        t = torch.zeros_like(t_s).scatter(1, order, t_s)
    else:
        r = torch.ones_like(a) if norm == "linf" else a
        b = cap / r.clamp_min(1e-30)  # coordinate i is capped once tau >= b_i
        # g(tau) = sum_i a_i min(tau r_i, cap_i) is increasing and piecewise linear with
        # breakpoints b_i. Bisection brackets the piece holding g = c (cheaper than sorting
        # the breakpoints: elementwise passes instead of an (N, D) sort every step), then the
        # linear piece gives tau exactly: the capped coordinates contribute a_i cap_i, the
        # others a_i r_i tau.
        lo = torch.zeros_like(c)
        hi = b.amax(dim=1)
        buf = torch.empty_like(cap)
        for _ in range(_BISECT_STEPS):
            mid = 0.5 * (lo + hi)
            if norm == "linf":
                torch.minimum(cap, mid[:, None], out=buf)
            else:
                torch.minimum(torch.mul(r, mid[:, None], out=buf), cap, out=buf)
            big = torch.linalg.vecdot(a, buf) >= c
            hi = torch.where(big, mid, hi)
            lo = torch.where(big, lo, mid)
        capped = b <= lo[:, None]
        s_cap = (a * cap * capped).sum(dim=1)
        slope = (a * r * ~capped).sum(dim=1)
        tau = ((c - s_cap) / slope.clamp_min(1e-30)).clamp(lo, hi)
        t = torch.minimum(tau[:, None] * r, cap)
        t = torch.where(a > 0, t, torch.zeros_like(t))
    t = torch.where(infeasible[:, None], cap, t)
    return w.sign() * t


def _norm(norm: str, d: Tensor) -> Tensor:
    if norm == "linf":
        return d.abs().amax(dim=1)
    if norm == "l2":
        return d.norm(dim=1)
    return d.abs().sum(dim=1)


def _dual_norm(norm: str, g: Tensor) -> Tensor:
    """Dual norm over the last dimension of g (N, M, D)."""
    if norm == "linf":
        return g.abs().sum(dim=-1)
    if norm == "l2":
        return g.norm(dim=-1)
    return g.abs().amax(dim=-1)


def _fab_start(norm: str, x: Tensor, radius: Tensor, gen: torch.Generator) -> Tensor:
    """Random start at Lp distance ``radius`` (N,) / 2 from x, clipped to the box."""
    if norm == "linf":
        t = 2 * torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) - 1
    else:
        t = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    t = t / _col(_norm(norm, _flat(t)).clamp_min(1e-12), t)
    return (x + t * _col(radius, x) * 0.5).clamp(0.0, 1.0)


def fab_run(
    counter: Counter,
    norm: str,
    x: Tensor,
    y: Tensor,
    classes: Tensor,
    success_target: Tensor | None,
    x_start: Tensor,
    *,
    steps: int,
    alpha_max: float,
    eta: float,
    beta: float,
    bound: float | Tensor | None,
) -> tuple[Tensor, Tensor]:
    """One FAB run. ``classes`` (N, M): the boundaries considered (all other classes, or the
    target). ``bound``: stop a point once an adversarial point within this distance is found
    (None: run all steps); a float, or an (N,) tensor of per-sample distances (a threat with a
    per-sample radius, e.g. a dB budget on audio). Returns the closest adversarial point found (N, ...) and its
    distance (N,), ``inf`` where none was found."""
    n = x.shape[0]
    best_dist = torch.full((n,), float("inf"), device=x.device, dtype=x.dtype)
    x_best = x.detach().clone()

    def grads(xs: Tensor, idx: Tensor):
        # Reaching a given target means beating its strongest competitor, not just y.
        ref = y[idx] if success_target is None else None
        logits, df, dg = logit_diff_grads(counter, xs, ref, classes[idx])
        pred = logits.argmax(dim=1)
        adv = pred != y[idx] if success_target is None else pred == success_target[idx]
        return adv, df, dg.reshape(dg.shape[0], dg.shape[1], -1)

    def record(idx: Tensor, xs: Tensor, adv: Tensor) -> Tensor:
        """Keep better adversarial points; return the mask of points done."""
        d = _norm(norm, _flat(xs - x[idx]))
        better = adv & (d < best_dist[idx])
        best_dist[idx[better]] = d[better]
        x_best[idx[better]] = xs[better]
        done = best_dist[idx] <= 0
        if bound is not None:
            done = done | (best_dist[idx] <= (bound[idx] if isinstance(bound, Tensor) else bound))
        return done

    idx = torch.arange(n, device=x.device)
    xs = x_start.detach().clone()
    adv, df, dg = grads(xs, idx)
    for it in range(steps + 1):
        done = record(idx, xs, adv)
        if it == steps:
            break
        if bool(done.any()):
            keep = ~done
            idx, xs, adv, df, dg = idx[keep], xs[keep], adv[keep], df[keep], dg[keep]
            if idx.numel() == 0:
                break
        if bool(adv.any()):
            # Pull adversarial iterates back towards the clean input. The linearisation of the
            # adversarial point is carried over (its offset moved along the gradient) instead of
            # paying a fresh forward and backward pass at the pulled-back point.
            x0a = x[idx[adv]]
            xs = xs.clone()
            moved = beta * (xs[adv] - x0a) + x0a
            shift = _flat(moved - xs[adv])
            df = df.clone()
            df[adv] = df[adv] + (dg[adv] * shift[:, None, :]).sum(dim=-1)
            xs[adv] = moved
        m = idx.numel()
        ar = torch.arange(m, device=x.device)
        j = (df.abs() / _dual_norm(norm, dg).clamp_min(1e-12)).argmin(dim=1)
        w = dg[ar, j]
        f = df[ar, j]
        xf, x0f = _flat(xs), _flat(x[idx])
        # Hyperplane f + <w, z - xs> = 0: steps from xs and from the clean input.
        d1 = min_norm_box_step(xf, w, -f, norm)
        d2 = min_norm_box_step(x0f, w, -f - (w * (x0f - xf)).sum(dim=1), norm)
        n1 = _norm(norm, d1).clamp_min(1e-8)
        n2 = _norm(norm, d2).clamp_min(1e-8)
        alpha = (n1 / (n1 + n2)).clamp(0.0, alpha_max)[:, None]
        new = ((xf + eta * d1) * (1 - alpha) + (x0f + eta * d2) * alpha).clamp(0.0, 1.0)
        xs = new.reshape(xs.shape)
        adv, df, dg = grads(xs, idx)
    return x_best, best_dist


@dataclass(frozen=True)
class FAB:
    """The FAB attack; FAB-T when ``n_target_classes`` is set.

    Args:
        threat: the LpBall (linf, l2 or l1): the norm minimised, and eps (the ball of bounded
            mode and the radius of random restarts); or any Ball with an Lp ``norm`` and a
            per-sample ``radius(x)`` (``DbBall``, ``SnrBall``), whose radius plays eps's part
            for each point.
        steps: iterations per run (100 in AutoAttack).
        restarts: runs per point (per target class for FAB-T); the first starts at the clean
            input, later ones at a random point at half the smaller of eps and the best
            distance so far.
        n_target_classes: None: untargeted FAB over all class boundaries. An int: FAB-T,
            targeting each of the top-k other classes of the clean prediction in turn (9 in
            AutoAttack; capped at the number of classes minus 1).
        alpha_max, eta, beta: largest weight of the clean-input projection, overshoot past the
            hyperplane, pull-back factor on success (0.1, 1.05, 0.9 as in the paper).
        minimal: minimal-distance mode (see the module docstring).
        seed: seed of the random restarts.
    """

    threat: LpBall
    steps: int = 100
    restarts: int = 1
    n_target_classes: int | None = None
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    minimal: bool = False
    seed: int | None = 0

    def __post_init__(self) -> None:
        check_lp(self.threat)
        check_positive_int(self.steps, "steps")
        check_positive_int(self.restarts, "restarts")
        if self.n_target_classes is not None:
            check_positive_int(self.n_target_classes, "n_target_classes")
        check_nonneg_float(self.alpha_max, "alpha_max")
        if not 0 <= self.alpha_max <= 1:
            raise ValueError(f"alpha_max: expected a number in [0, 1], got {self.alpha_max!r}")
        check_nonneg_float(self.eta, "eta")
        if self.eta < 1:
            raise ValueError(f"eta: expected an overshoot >= 1, got {self.eta!r}")
        check_nonneg_float(self.beta, "beta")
        if not 0 < self.beta <= 1:
            raise ValueError(f"beta: expected a number in (0, 1], got {self.beta!r}")

    @property
    def name(self) -> str:
        r = f"x{self.restarts}" if self.restarts > 1 else ""
        return ("FAB-T" if self.n_target_classes is not None else "FAB") + r

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """Attack a batch: x (N, C, H, W) (or (N, 1, T) audio, or any (N, ...)) in [0, 1], y (N,)
        int64 labels; ``target`` (N,): a targeted run against it (success = reaching the target)."""
        n_classes = prepare(model, x, y, target)
        y = y.to(torch.int64)
        norm = self.threat.norm
        # A scalar eps for an LpBall; the (N,) per-sample radius in x units otherwise.
        eps: float | Tensor = (self.threat.eps if isinstance(self.threat, LpBall)
                               else self.threat.radius(x).to(device=x.device, dtype=x.dtype))
        n = x.shape[0]
        gen = make_generator(self.seed, x.device)
        bound = None if self.minimal else eps
        with ModelGuard(model):
            counter = Counter(model)
            best_dist = torch.full((n,), float("inf"), device=x.device, dtype=x.dtype)
            x_best = x.detach().clone()
            if target is not None:
                plan = [(target.to(torch.int64)[:, None], target.to(torch.int64))]
            elif self.n_target_classes is None:
                others = torch.arange(n_classes, device=x.device).expand(n, n_classes)
                keep = others != y[:, None]
                plan = [(others[keep].reshape(n, n_classes - 1), None)]
            else:
                clean = counter.logits(x)
                order = clean.argsort(dim=1, descending=True)
                misc = order[:, 0] != y
                best_dist[misc] = 0.0
                plan = [(order[:, r:r + 1], None) for r in range(1, min(self.n_target_classes, n_classes - 1) + 1)]
            for classes, succ_t in plan:
                for r in range(self.restarts):
                    todo = best_dist > 0 if bound is None else best_dist > bound
                    idx = todo.nonzero().squeeze(1)
                    if idx.numel() == 0:
                        break
                    x0 = x[idx]
                    if r == 0:
                        start = x0.clone()
                    else:
                        rad = torch.minimum(best_dist[idx], eps[idx] if isinstance(eps, Tensor)
                                            else torch.full_like(best_dist[idx], eps))
                        start = _fab_start(norm, x0, rad, gen)
                    with approximate_decisions(model) as approx:
                        xb, db = fab_run(counter, norm, x0, y[idx], classes[idx],
                                         None if succ_t is None else succ_t[idx], start, steps=self.steps,
                                         alpha_max=self.alpha_max, eta=self.eta, beta=self.beta, bound=bound)
                    better = db < best_dist[idx]
                    if approx and bool(better.any()):
                        # Reduced precision decided those points: confirm them with the exact
                        # decisions (one counted forward each) before they end the search.
                        cand = better.nonzero().squeeze(1)
                        pred = counter.logits(xb[cand]).argmax(dim=1)
                        ok = pred != y[idx[cand]] if succ_t is None else pred == succ_t[idx[cand]]
                        better[cand[~ok]] = False
                    best_dist[idx[better]] = db[better]
                    x_best[idx[better]] = xb[better]
            found = torch.isfinite(best_dist)
            if self.minimal:
                return minimal_result(self.threat, x, x_best, found, counter)
            inside = found & (best_dist <= eps)
            x_ret = torch.where(_col(inside, x), x_best, x)
            success = inside.clone()
            # Closest adversarial points beyond eps: projected into the ball, asked again.
            far = (found & ~inside).nonzero().squeeze(1)
            if far.numel():
                xr, sr = bounded_finish(counter, self.threat, x[far], y[far],
                                        None if target is None else target[far].to(torch.int64), x_best[far])
                x_ret[far] = xr
                success[far] = sr
        return finish(self.threat, x, x_ret, success, counter)
