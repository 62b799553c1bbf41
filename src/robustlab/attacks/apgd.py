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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.base import Counter, ModelGuard, finish, make_generator, prepare
from robustlab.attacks.losses import ce_loss, is_success, rejects
from robustlab.results import AttackResult
from robustlab.threats import LpBall, check_lp
from robustlab.validation import check_positive_int

_DLR_TINY = 1e-12


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def _col(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


def _check_fraction(value: object, name: str, lo_open: bool = True) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and (0 < value <= 1 if lo_open else 0 <= value <= 1)
    if not ok:
        raise ValueError(f"{name}: expected a number in {'(0, 1]' if lo_open else '[0, 1]'}, got {value!r}")
    return float(value)


# -- losses ---------------------------------------------------------------------------------

def dlr_loss(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """The Difference of Logits Ratio, per sample, to be maximised (> 0 means misclassified).

    Untargeted: (max_{i != y} z_i - z_y) / (z_(1) - z_(3)); targeted: (z_t - z_y) /
    (z_(1) - (z_(3) + z_(4)) / 2), with z_(k) the k-th largest logit. Needs 3 (untargeted) or
    4 (targeted) classes.
    """
    top = logits.topk(3 if target is None else 4, dim=1).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
        return (other - z_y) / (top[:, 0] - top[:, 2] + _DLR_TINY)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return (z_t - z_y) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_TINY)


def apgd_loss(name: str, logits: Tensor, y: Tensor, target: Tensor | None, reject: bool = False) -> Tensor:
    """Per-sample loss APGD ascends: "ce" (targeted: minus the cross-entropy to the target;
    reject-aware, see ``losses.ce_loss``) or "dlr" (targeted: the targeted DLR)."""
    if name == "ce":
        if target is None:
            return ce_loss(logits, y, reject)
        return -F.cross_entropy(logits, target, reduction="none")
    return dlr_loss(logits, y, target)


# -- geometry -------------------------------------------------------------------------------

def project_l1_box(v: Tensor, x: Tensor, eps: float | Tensor, iters: int = 30) -> Tensor:
    """Euclidean projection of ``v`` onto {z : ||z - x||_1 <= eps, 0 <= z <= 1}, per sample.

    The exact projection onto the intersection (not L1 ball then box, which can land far
    from the nearest point): coordinate i moves by sign(d_i) * min(max(|d_i| - lam, 0), cap_i)
    with d = v - x and cap_i the room to the box edge; lam >= 0 is found by bisection so the
    L1 norm is at most eps. ``eps`` is a float or an (N,) tensor.
    """
    n = x.shape[0]
    d = _flat(v - x)
    xf = _flat(x)
    cap = torch.where(d > 0, 1.0 - xf, xf).clamp_min(0)
    mag = d.abs()
    e = torch.as_tensor(eps, dtype=d.dtype, device=d.device).expand(n)
    t0 = torch.minimum(mag, cap)
    inside = t0.sum(dim=1) <= e
    lo = torch.zeros(n, dtype=d.dtype, device=d.device)
    hi = mag.amax(dim=1) if mag.shape[1] else lo.clone()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        s = torch.minimum((mag - mid[:, None]).clamp_min(0), cap).sum(dim=1)
        big = s > e
        lo = torch.where(big, mid, lo)
        hi = torch.where(big, hi, mid)
    t = torch.minimum((mag - hi[:, None]).clamp_min(0), cap)
    t = torch.where(inside[:, None], t0, t)
    return (xf + d.sign() * t).reshape(x.shape).clamp(0.0, 1.0)


def _project(norm: str, v: Tensor, x: Tensor, eps: float, ball: object | None = None) -> Tensor:
    if ball is not None:  # a ball with its own per-sample radius (computed from the clean x)
        return ball.project(v, x)  # type: ignore[attr-defined]
    if norm == "l1":
        out = project_l1_box(v, x, eps)
        # Float summation can leave the L1 norm a few ulps over eps; shrink those by a hair.
        return LpBall("l1", eps).project(out, x)
    return LpBall(norm, eps).project(v, x)  # type: ignore[arg-type]


def _random_start(norm: str, x: Tensor, eps: float, gen: torch.Generator) -> Tensor:
    """A random point on (Linf, L2) or projected onto (L1) the sphere of radius eps, in the box."""
    if norm == "linf":
        u = 2 * torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) - 1
        u = u / _col(_flat(u).abs().amax(dim=1).clamp_min(1e-12), u)
        return _project(norm, x + eps * u, x, eps)
    g = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    if norm == "l2":
        g = g / _col(_flat(g).norm(dim=1).clamp_min(1e-12), g)
        return _project(norm, x + eps * g, x, eps)
    return _project(norm, x + g, x, eps)


def _l1_direction(grad: Tensor, x_cur: Tensor, frac: Tensor) -> Tensor:
    """Unit-L1 sparse ascent direction: sign(g) on the top ``frac`` (per sample) fraction of
    coordinates by |g|, skipping coordinates pinned at the box edge in the ascent direction."""
    g = grad.masked_fill(((x_cur <= 0) & (grad < 0)) | ((x_cur >= 1) & (grad > 0)), 0.0)
    a = _flat(g).abs()
    dim = a.shape[1]
    k = (frac * dim).round().long().clamp(1, dim)
    srt = a.sort(dim=1, descending=True).values
    thresh = srt.gather(1, (k - 1)[:, None])
    keep = (a >= thresh) & (a > 0)
    direc = _flat(g).sign() * keep
    return (direc / direc.abs().sum(dim=1, keepdim=True).clamp_min(1.0)).reshape(grad.shape)


def _direction(norm: str, grad: Tensor) -> Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / _col(_flat(grad).norm(dim=1).clamp_min(1e-12), grad)


# -- the single run -------------------------------------------------------------------------

def _checkpoint_lengths(steps: int) -> tuple[int, int, int]:
    """First interval, decrement and minimum interval of the Linf/L2 step-size checkpoints."""
    return max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)


def apgd_run(
    counter: Counter,
    norm: str,
    x: Tensor,
    y: Tensor,
    loss_target: Tensor | None,
    x_start: Tensor,
    *,
    eps: float,
    steps: int,
    loss: str,
    success_target: Tensor | None = None,
    final_eps: float | None = None,
    rho: float = 0.75,
    momentum: float = 0.75,
    eot_iter: int = 1,
    early_stop: bool = True,
    l1_init_sparsity: bool = False,
    ball: object | None = None,
    reject: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One APGD run from ``x_start`` on a batch. Shared by APGD, APGDT and training code.

    Args:
        counter: routes and counts every model call.
        norm: "linf", "l2" or "l1"; eps: radius of this run (the L1 schedule uses larger ones).
        loss_target: (N,) classes the loss aims at (targeted loss), or None.
        success_target: (N,) classes that count as success; None: any misclassification.
        final_eps: radius a success must lie within (default eps); with a larger eps only the
            iterates inside ``final_eps`` count as successes.
        l1_init_sparsity: L1 only: take the initial top-k fraction from ``x_start``'s sparsity
            (a warm start) instead of 20%.
        ball: a Ball with a per-sample radius (linf/l2 geometry) whose ``project`` is used
            instead of an LpBall of radius ``eps``; then ``eps`` is its (N,) ``radius(x)``.
        reject: the model answers "reject" in its last column (reject-aware loss and success).

    Returns:
        x_best (N, ...) highest-loss point, loss_best (N,), success (N,) bool, x_adv (N, ...)
        the first adversarial iterate where success (else x). Success and x_adv come from the
        model's logits at exactly those points.
    """
    n = x.shape[0]
    dev = x.device
    final_eps = eps if final_eps is None else final_eps
    x_best = x_start.detach().clone()
    grad_best = torch.zeros_like(x)
    loss_best = torch.full((n,), float("-inf"), device=dev, dtype=x.dtype)
    success = torch.zeros(n, dtype=torch.bool, device=dev)
    x_adv = x.detach().clone()
    dim = x[0].numel()

    def ev(xs: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        yi = y[idx]
        ti = None if loss_target is None else loss_target[idx]
        g = torch.zeros_like(xs)
        lv = torch.zeros(xs.shape[0], device=dev, dtype=x.dtype)
        for _ in range(eot_iter):
            logits, gr = counter.logits_and_grad(xs, lambda out: apgd_loss(loss, out, yi, ti, reject))
            g += gr
            lv += apgd_loss(loss, logits, yi, ti, reject)
        if eot_iter > 1:
            g /= eot_iter
            lv /= eot_iter
        return logits, lv, g

    def hits(logits: Tensor, idx: Tensor, xs: Tensor, x0: Tensor) -> Tensor:
        ok = is_success(logits, y[idx], None if success_target is None else success_target[idx], reject)
        if ball is None and final_eps < eps:
            ok = ok & (LpBall(norm, final_eps).distance(xs, x0) <= final_eps)  # type: ignore[arg-type]
        return ok

    # Compact per-sample state of the points still being attacked.
    idx = torch.arange(n, device=dev)
    x0 = x.detach()
    xs = x_start.detach().clone()
    logits, lv, grad = ev(xs, idx)
    ok = hits(logits, idx, xs, x0)
    loss_best[:] = lv
    grad_best[:] = grad
    success[idx[ok]] = True
    x_adv[idx[ok]] = xs[ok]

    step0 = (2.0 if norm in ("linf", "l2") else 1.0) * eps
    st = {
        "idx": idx, "x0": x0, "xs": xs, "prev": xs.clone(), "grad": grad,
        "step": (step0.to(dev, x.dtype).clone() if isinstance(step0, Tensor)
                 else torch.full((n,), step0, device=dev, dtype=x.dtype)),
        "loss_prev": lv.clone(), "inc": torch.zeros(n, device=dev, dtype=x.dtype),
        "best_at_check": lv.clone(), "reduced": torch.ones(n, dtype=torch.bool, device=dev),
    }
    if norm == "l1":
        if l1_init_sparsity:
            sp = (_flat(xs - x0) != 0).sum(dim=1).to(x.dtype)
            st["topk"] = (sp / dim / 1.5).clamp(1.0 / dim, 1.0)
            st["sp_old"] = sp
        else:
            st["topk"] = torch.full((n,), 0.2, device=dev, dtype=x.dtype)
            st["sp_old"] = torch.full((n,), float(dim), device=dev, dtype=x.dtype)

    def drop(keep: Tensor) -> None:
        for k in st:
            st[k] = st[k][keep]

    if early_stop and bool(ok.any()):
        drop(~ok)

    interval, decr, min_interval = _checkpoint_lengths(steps)
    if norm == "l1":
        interval = max(int(0.04 * steps), 1)
    since_check = 0
    for i in range(steps):
        if st["idx"].numel() == 0:
            break
        xs, x0, step = st["xs"], st["x0"], _col(st["step"], st["xs"])
        with torch.no_grad():
            if norm == "l1":
                z = _project(norm, xs + step * _l1_direction(st["grad"], xs, st["topk"]), x0, eps, ball)
            else:
                z = _project(norm, xs + step * _direction(norm, st["grad"]), x0, eps, ball)
                if i > 0 and momentum < 1:
                    z = _project(norm, xs + momentum * (z - xs) + (1 - momentum) * (xs - st["prev"]), x0, eps, ball)
        st["prev"], st["xs"] = xs, z
        idx = st["idx"]
        logits, lv, grad = ev(z, idx)
        st["grad"] = grad
        ok = hits(logits, idx, z, x0)
        if bool(ok.any()):
            success[idx[ok]] = True
            x_adv[idx[ok]] = z[ok]
        better = lv > loss_best[idx]
        if bool(better.any()):
            ib = idx[better]
            x_best[ib] = z[better]
            grad_best[ib] = grad[better]
            loss_best[ib] = lv[better]
        st["inc"] = st["inc"] + (lv > st["loss_prev"]).to(x.dtype)
        st["loss_prev"] = lv
        if early_stop and bool(ok.any()):
            drop(~ok)
            if st["idx"].numel() == 0:
                break
        since_check += 1
        if since_check < interval:
            continue
        since_check = 0
        idx = st["idx"]
        if norm == "l1":
            sp = (_flat(x_best[idx] - st["x0"]) != 0).sum(dim=1).to(x.dtype)
            reset = sp / st["sp_old"].clamp_min(1.0) < 0.95
            st["topk"] = (sp / dim / 1.5).clamp(1.0 / dim, 1.0)
            st["step"] = torch.where(reset, torch.full_like(st["step"], step0), st["step"] / 1.5)
            st["step"] = st["step"].clamp(step0 / 10, step0)
            st["sp_old"] = sp
        else:
            lb = loss_best[idx]
            reset = (st["inc"] <= rho * interval) | (~st["reduced"] & (st["best_at_check"] >= lb))
            st["reduced"] = reset
            st["best_at_check"] = lb.clone()
            st["inc"] = torch.zeros_like(st["inc"])
            st["step"] = torch.where(reset, st["step"] / 2, st["step"])
            interval = max(interval - decr, min_interval)
        if bool(reset.any()):
            # Go back to the best point with its gradient. The previous iterate is kept, so the
            # next step's momentum term is (best - iterate before the last step), as in the
            # reference implementation (it does not restart the momentum).
            st["xs"][reset] = x_best[idx[reset]]
            st["grad"][reset] = grad_best[idx[reset]]
    return x_best, loss_best, success, x_adv


def _large_eps_schedule(steps: int) -> list[tuple[float, int]]:
    """(radius factor, steps) stages of the L1 schedule: 3, 2, then 1 times eps."""
    a = math.ceil(0.3 * steps)
    b = math.ceil(0.3 * steps)
    c = steps - a - b
    return [(f, s) for f, s in ((3.0, a), (2.0, b), (1.0, c)) if s > 0]


def _apgd_points(
    counter: Counter, threat: LpBall, x: Tensor, y: Tensor, loss_target: Tensor | None,
    success_target: Tensor | None, gen: torch.Generator, *, steps: int, loss: str, rho: float,
    momentum: float, eot_iter: int, early_stop: bool, large_reps: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One restart (a random start, or the radius schedule when ``large_reps``)."""
    reject = rejects(counter.model)
    kw = dict(loss=loss, success_target=success_target, rho=rho, momentum=momentum, eot_iter=eot_iter, reject=reject)
    if not isinstance(threat, LpBall):  # a per-sample radius: the ball projects, steps scale with it
        if threat.norm == "l1" or large_reps:
            raise ValueError("threat: APGD walks per-sample balls in linf or l2 only (no L1 radius schedule)")
        start = threat.random_start(x, gen)
        return apgd_run(counter, threat.norm, x, y, loss_target, start, eps=threat.radius(x).to(x.dtype),
                        steps=steps, early_stop=early_stop, ball=threat, **kw)  # type: ignore[arg-type]
    norm, eps = threat.norm, threat.eps
    if not large_reps:
        start = _random_start(norm, x, eps, gen)
        return apgd_run(counter, norm, x, y, loss_target, start, eps=eps, steps=steps,
                        early_stop=early_stop, **kw)  # type: ignore[arg-type]
    stages = _large_eps_schedule(steps)
    start = _random_start(norm, x, stages[0][0] * eps, gen)
    n = x.shape[0]
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    x_adv = x.detach().clone()
    for s, (factor, st_steps) in enumerate(stages):
        e = factor * eps
        start = _project(norm, start, x, e)
        last = s == len(stages) - 1
        x_best, loss_best, succ, adv = apgd_run(
            counter, norm, x, y, loss_target, start, eps=e, steps=st_steps, final_eps=eps,
            early_stop=early_stop and last, l1_init_sparsity=norm == "l1", **kw)  # type: ignore[arg-type]
        new = succ & ~success
        x_adv[new] = adv[new]
        success |= succ
        start = x_best
    return x_best, loss_best, success, x_adv


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
            order = clean.argsort(dim=1, descending=True)
            n = x.shape[0]
            state = (x.detach().clone(), clean.argmax(dim=1) != y,
                     torch.full((n,), float("-inf"), device=x.device, dtype=x.dtype))
            for r in range(1, min(self.n_target_classes, n_classes - 1) + 1):
                # The r-th most likely class other than the top one; when the top one is not y
                # the point is already broken and never attacked.
                tgt = order[:, r]
                x_ret, success = _restarts(counter, self.threat, x, y, tgt, None, gen, self.restarts, self,
                                           state=state)
                state = (x_ret, success, state[2])
        return finish(self.threat, x, state[0], state[1], counter)
