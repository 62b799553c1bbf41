"""One APGD run (Croce & Hein 2020) on a batch: the step-size schedule with its checkpoints,
momentum, per-sample early stopping, and the L1 radius schedule of AutoAttack's L1 setting.
``attacks.apgd`` builds APGD and APGD-T (restarts, targets) on it; training code may call
``apgd_run`` directly.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from robustlab.attacks.base import Counter
from robustlab.attacks.losses import apgd_loss, is_success, rejects
from robustlab.threats import LpBall
from robustlab.threats.lp import project_box, sparse_l1_direction, sphere_start, unit_direction


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def _col(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


def _project(norm: str, v: Tensor, x: Tensor, eps: float, ball: object | None = None) -> Tensor:
    if ball is not None:  # a ball with its own per-sample radius (computed from the clean x)
        return ball.project(v, x)  # type: ignore[attr-defined]
    return project_box(norm, v, x, eps)


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
                z = _project(norm, xs + step * sparse_l1_direction(st["grad"], xs, st["topk"]), x0, eps, ball)
            else:
                z = _project(norm, xs + step * unit_direction(norm, st["grad"]), x0, eps, ball)
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
        start = sphere_start(norm, x, eps, gen)
        return apgd_run(counter, norm, x, y, loss_target, start, eps=eps, steps=steps,
                        early_stop=early_stop, **kw)  # type: ignore[arg-type]
    stages = _large_eps_schedule(steps)
    start = sphere_start(norm, x, stages[0][0] * eps, gen)
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
