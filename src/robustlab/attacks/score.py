"""Score-based attacks with estimated gradients: SPSA (Uesato et al. 2018) and NES (Ilyas et
al. 2018). Square, the other score-based attack, lives in ``square.py``.

Both descend the same per-sample loss as Square (``_blackbox.score_loss``: margin by default) with
a gradient estimated from antithetic finite differences of the model's scores: SPSA with
Rademacher directions and an Adam step, NES with Gaussian directions and a momentum step along
the threat's steepest direction (sign for Linf). Every iterate is projected into the ball.

Cost, counted per sample: one query on the clean input; then each step spends ``2 * samples``
queries on the estimate and one on the new iterate, while the point is unbroken and the
remaining budget covers a whole step. Never more than ``max_queries``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from robustlab.attacks._blackbox import (
    Queries,
    QueryBudgetExceeded,
    accept,
    budget_stop,
    check_blackbox_inputs,
    check_lp,
    first_query,
    require_scores,
    score_loss,
)
from robustlab.attacks.base import ModelGuard, make_generator
from robustlab.results import AttackResult
from robustlab.threats import LpBall
from robustlab.validation import check_nonneg_float, check_positive_int


def _check_positive(value: object, name: str) -> float:
    v = check_nonneg_float(value, name)
    if v <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {value!r}")
    return v


def estimate_gradient(q: Queries, x: Tensor, idx: Tensor, y: Tensor, target: Tensor | None, *, loss: str,
                      samples: int, delta: float, kind: str, gen: torch.Generator,
                      chunk: int = 4096) -> Tensor:
    """Antithetic finite-difference estimate of the gradient of the score loss at ``x`` (M, ...).

    ``kind`` "rademacher" (SPSA) or "gaussian" (NES); 2 * samples queries per point, sent in
    model calls of at most ``chunk`` inputs. Probes are clipped to the [0, 1] box.
    """
    m = x.shape[0]
    shape = (m, samples) + tuple(x.shape[1:])
    if kind == "rademacher":
        u = (torch.randint(0, 2, shape, generator=gen, device=x.device) * 2 - 1).to(x.dtype)
    else:
        u = torch.randn(shape, generator=gen, device=x.device, dtype=x.dtype)
    pts = torch.cat([(x[:, None] + delta * u), (x[:, None] - delta * u)], dim=1).clamp(0.0, 1.0)
    pts = pts.reshape((m * 2 * samples,) + tuple(x.shape[1:]))
    owner = idx.repeat_interleave(2 * samples)
    ys = y.repeat_interleave(2 * samples)
    ts = None if target is None else target.repeat_interleave(2 * samples)
    losses = []
    for s in range(0, pts.shape[0], chunk):
        sc = q.scores(pts[s:s + chunk], owner[s:s + chunk])
        losses.append(score_loss(loss, sc, ys[s:s + chunk], None if ts is None else ts[s:s + chunk]))
    lv = torch.cat(losses).reshape(m, 2, samples)
    diff = (lv[:, 0] - lv[:, 1]) / (2 * delta)  # (m, samples)
    return (diff.reshape(m, samples, *([1] * (x.dim() - 1))) * u).mean(dim=1)


def _run_estimated(attack, q: Queries, x: Tensor, y: Tensor, target: Tensor | None, gen: torch.Generator,
                   update) -> tuple[Tensor, Tensor]:
    """The loop SPSA and NES share. ``update(xc, grad, state, rows)`` returns the next iterate
    (before projection); ``state`` is a dict of per-point tensors kept aligned with the batch."""
    threat: LpBall = attack.threat
    n = x.shape[0]
    dev = x.device
    x_best = x.clone()
    first = first_query(q, x, y, target, attack.loss, attack.name)
    if first is None:
        return x_best, torch.zeros(n, dtype=torch.bool, device=dev)
    success, best_loss = first
    per_step = 2 * attack.samples + 1
    x_cur = x.clone()
    state: dict[str, Tensor] = {}
    step = 0
    try:
        while True:
            active = ~success & (q.per_sample + per_step <= attack.max_queries)
            idx = active.nonzero().squeeze(1)
            if idx.numel() == 0 or threat.eps == 0:
                break
            step += 1
            ti = None if target is None else target[idx]
            g = estimate_gradient(q, x_cur[idx], idx, y[idx], ti, loss=attack.loss, samples=attack.samples,
                                  delta=attack.delta, kind=attack._kind, gen=gen)
            nxt = threat.project(update(x_cur[idx], g, state, idx, step), x[idx])
            x_cur[idx] = nxt
            sc = q.scores(nxt, idx)
            accept(idx, nxt, sc, y, target, attack.loss, x_best, best_loss, success)
    except QueryBudgetExceeded as e:
        budget_stop(attack.name, e, q)
    return x_best, success


def _call(attack, model: object, x: Tensor, y: Tensor, target: Tensor | None, update) -> AttackResult:
    check_blackbox_inputs(model, x, y, target)
    require_scores(model, type(attack).__name__)
    y = y.to(torch.int64)
    target = None if target is None else target.to(torch.int64)
    gen = make_generator(attack.seed, x.device)
    with ModelGuard(model):
        q = Queries(model, x.shape[0], x.device)
        x_best, success = _run_estimated(attack, q, x, y, target, gen, update)
    return AttackResult(x_adv=x_best.detach(), success=success, distance=attack.threat.distance(x_best, x),
                        forward_calls=q.total, backward_calls=0, queries=q.per_sample.clone())


def _validate(attack) -> None:
    check_lp(attack.threat)
    check_positive_int(attack.max_queries, "max_queries")
    check_positive_int(attack.samples, "samples")
    _check_positive(attack.delta, "delta")
    if attack.loss not in ("margin", "ce"):
        raise ValueError(f"loss: expected 'margin' or 'ce', got {attack.loss!r}")


@dataclass(frozen=True)
class SPSA:
    """SPSA (Uesato et al. 2018): Rademacher finite differences and Adam, inside an Lp ball.

    Args:
        threat: the LpBall (eps in [0, 1] pixel units).
        max_queries: per-sample query budget (clean input included).
        samples: antithetic direction pairs per step (2 * samples queries).
        delta: finite-difference step in pixel units.
        lr: Adam learning rate: the per-coordinate step in pixel units; default eps / 4 for
            Linf and eps / (4 * sqrt(dim)) for L2 (a quarter of the radius per step: under a
            query budget few steps are affordable, so they must be long).
        seed: seed of the random directions.
        loss: "margin" or "ce" on the scores (see ``_blackbox.score_loss``).
    """

    threat: LpBall
    max_queries: int = 5000
    samples: int = 16
    delta: float = 0.01
    lr: float | None = None
    seed: int | None = 0
    loss: str = "margin"
    _kind = "rademacher"

    def __post_init__(self) -> None:
        _validate(self)
        if self.lr is not None:
            _check_positive(self.lr, "lr")

    @property
    def name(self) -> str:
        return f"SPSA-{self.max_queries}"

    def __call__(self, model: object, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """Attack a batch: ``model`` maps (N, ...) in [0, 1] to (N, K) scores; x (N, ...); y (N,)."""
        b1, b2 = 0.9, 0.999
        n = x.shape[0]
        dim = max(int(torch.tensor(x.shape[1:]).prod()), 1)
        lr = self.lr if self.lr is not None else (
            self.threat.eps / 4 if self.threat.norm == "linf" else self.threat.eps / (4 * dim ** 0.5))

        def update(xc: Tensor, g: Tensor, state: dict[str, Tensor], idx: Tensor, step: int) -> Tensor:
            if not state:
                state["m"] = torch.zeros((n,) + tuple(x.shape[1:]), device=x.device, dtype=x.dtype)
                state["v"] = torch.zeros_like(state["m"])
                state["t"] = torch.zeros(n, device=x.device, dtype=x.dtype)
            state["t"][idx] += 1
            t = state["t"][idx].reshape((-1,) + (1,) * (x.dim() - 1))
            m = state["m"][idx] * b1 + (1 - b1) * g
            v = state["v"][idx] * b2 + (1 - b2) * g * g
            state["m"][idx], state["v"][idx] = m, v
            mh, vh = m / (1 - b1 ** t), v / (1 - b2 ** t)
            return xc - lr * mh / (vh.sqrt() + 1e-8)

        return _call(self, model, x, y, target, update)


@dataclass(frozen=True)
class NES:
    """NES gradient estimation (Ilyas et al. 2018) with momentum steps inside an Lp ball.

    Args:
        threat: the LpBall (eps in [0, 1] pixel units).
        max_queries: per-sample query budget (clean input included).
        samples: antithetic Gaussian direction pairs per step (2 * samples queries).
        delta: the search variance sigma, in pixel units.
        step_size: step length in the threat's norm (sign steps for Linf); default eps / 5.
        momentum: weight of the previous estimate in the running gradient.
        seed: seed of the random directions.
        loss: "margin" or "ce" on the scores.
    """

    threat: LpBall
    max_queries: int = 5000
    samples: int = 25
    delta: float = 0.01
    step_size: float | None = None
    momentum: float = 0.5
    seed: int | None = 0
    loss: str = "margin"
    _kind = "gaussian"

    def __post_init__(self) -> None:
        _validate(self)
        if self.step_size is not None:
            _check_positive(self.step_size, "step_size")
        if isinstance(self.momentum, bool) or not isinstance(self.momentum, (int, float)) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum: expected a number in [0, 1), got {self.momentum!r}")

    @property
    def name(self) -> str:
        return f"NES-{self.max_queries}"

    def __call__(self, model: object, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """Attack a batch: ``model`` maps (N, ...) in [0, 1] to (N, K) scores; x (N, ...); y (N,)."""
        step = self.step_size if self.step_size is not None else self.threat.eps / 5
        n = x.shape[0]

        def update(xc: Tensor, g: Tensor, state: dict[str, Tensor], idx: Tensor, it: int) -> Tensor:
            if not state:
                state["g"] = torch.zeros((n,) + tuple(x.shape[1:]), device=x.device, dtype=x.dtype)
            run = self.momentum * state["g"][idx] + (1 - self.momentum) * g
            state["g"][idx] = run
            return xc - step * self.threat.steepest_direction(run, xc)

        return _call(self, model, x, y, target, update)
