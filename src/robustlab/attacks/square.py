"""The Square attack (Andriushchenko et al. 2020): score-based random search, Linf and L2.

No gradients: each iteration changes the current perturbation on one random square window
(Linf: the window is set to +-eps per channel; L2: perturbation mass is moved from a second
window into the first one) and keeps the change if the loss on the model's scores improves.
The window side shrinks on a fixed schedule of the query budget.

Signals (N, C, T), e.g. audio clips (N, 1, T), or flat (N, T) vectors (one channel): a window
is a run of s * s consecutive samples
(the same area fraction p of the schedule as an s x s window of an image), s = round(sqrt(p T)).
Threats with a per-sample radius (``DbBall``, ``SnrBall``) give each point its own eps.

Cost, counted per sample: one query on the clean input, one on the initial perturbation,
then one per iteration while the point is unbroken; never more than ``max_queries``.
Works on an nn.Module (run without autograd) or any callable mapping inputs to scores
(``ScoreOnly``, ``HTTPModel(access="score")``, ``SklearnModel``).
"""
from __future__ import annotations

import math
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
from robustlab.attacks.base import ModelGuard, is_success, make_generator
from robustlab.results import AttackResult
from robustlab.threats import LpBall
from robustlab.validation import check_positive_int

# Iterations (out of 10,000) at which the window area fraction p halves (the paper's schedule,
# rescaled to the budget).
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(p_init: float, it: int, n_iters: int) -> float:
    """The fraction of the image area a window covers at iteration ``it`` of ``n_iters``."""
    t = int(it / max(n_iters, 1) * 10000)
    return p_init / 2 ** sum(t > h for h in _HALVINGS)


def _window_index(n: int, s: int, h: int, w: int, gen: torch.Generator, device) -> tuple[Tensor, Tensor, Tensor]:
    """Index tensors (n, s, s) for batch, row and column of one random s x s window per sample."""
    r = torch.randint(0, h - s + 1, (n,), generator=gen, device=device)
    c = torch.randint(0, w - s + 1, (n,), generator=gen, device=device)
    ar = torch.arange(s, device=device)
    bi = torch.arange(n, device=device)[:, None, None].expand(n, s, s)
    ri = (r[:, None] + ar)[:, :, None].expand(n, s, s)
    ci = (c[:, None] + ar)[:, None, :].expand(n, s, s)
    return bi, ri, ci


def _run_index(n: int, length: int, w: int, gen: torch.Generator, device) -> tuple[Tensor, Tensor, Tensor]:
    """Index tensors (n, 1, length) for batch, row (0) and column of one random run of
    ``length`` consecutive samples per signal, in the (n, C, 1, w) view of (n, C, w) signals."""
    c = torch.randint(0, w - length + 1, (n,), generator=gen, device=device)
    bi = torch.arange(n, device=device)[:, None, None].expand(n, 1, length)
    ri = torch.zeros(n, 1, length, dtype=torch.int64, device=device)
    ci = (c[:, None] + torch.arange(length, device=device))[:, None, :]
    return bi, ri, ci


def _bump_1d(length: int, dtype, device) -> Tensor:
    """A (1, length) pseudo-Gaussian bump: nested centred runs, the k-th from the centre
    weighted 1 / (k + 1)^2 (the 1-D counterpart of :func:`_bump`)."""
    centre = (length - 1) / 2
    ring = torch.ceil((torch.arange(length, device=device, dtype=dtype) - centre).abs() - 1e-6)
    out = torch.zeros(length, dtype=dtype, device=device)
    for k in range(int(math.ceil(length / 2)) + 1):
        out += (ring <= k).to(dtype) / (k + 1) ** 2
    return out[None]


def _meta_1d(n: int, length: int, gen: torch.Generator, dtype, device) -> Tensor:
    """(n, 1, length) unit-norm run perturbations: a bump, or with probability 1/2 two
    half-bumps of opposite sign side by side (randomly mirrored)."""
    full = _bump_1d(length, dtype, device)
    half = full.clone()
    half[:, length // 2:] *= -1
    full, half = full / full.norm(), half / half.norm()
    pick = torch.rand(n, generator=gen, device=device) < 0.5
    flip = torch.rand(n, generator=gen, device=device) < 0.5
    m = torch.where(pick[:, None, None], half, full).clone()
    m[flip] = m[flip].flip(2)
    return m


class _SignalQueries:
    """Routes the search's (M, C, 1, T) views of signals to ``q`` in their own shape (M, *tail):
    (M, C, T), or (M, T) for flat vectors."""

    def __init__(self, q: Queries, tail: tuple[int, ...]) -> None:
        self.q, self.tail = q, tail

    @property
    def n_classes(self) -> int | None:
        return self.q.n_classes

    def scores(self, x: Tensor, idx: Tensor) -> Tensor:
        return self.q.scores(x.reshape(x.shape[0], *self.tail), idx)


def _bump(s: int, dtype, device) -> Tensor:
    """An s x s pseudo-Gaussian bump: nested centred squares, the k-th from the centre weighted
    1 / (k + 1)^2, so the mass peaks in the middle and fades towards the border."""
    centre = (s - 1) / 2
    ar = torch.arange(s, device=device, dtype=dtype)
    d = torch.maximum((ar[:, None] - centre).abs(), (ar[None, :] - centre).abs())
    ring = torch.ceil(d - 1e-6)
    out = torch.zeros(s, s, dtype=dtype, device=device)
    for k in range(int(math.ceil(s / 2)) + 1):
        out += (ring <= k).to(dtype) / (k + 1) ** 2
    return out


def _meta(n: int, s: int, gen: torch.Generator, dtype, device) -> Tensor:
    """(n, s, s) unit-norm window perturbations: a bump, or with probability 1/2 two half-bumps
    of opposite sign side by side (randomly transposed)."""
    full = _bump(s, dtype, device)
    half = full.clone()
    half[s // 2:] *= -1
    full, half = full / full.norm(), half / half.norm()
    pick = torch.rand(n, generator=gen, device=device) < 0.5
    flip = torch.rand(n, generator=gen, device=device) < 0.5
    m = torch.where(pick[:, None, None], half, full).clone()
    m[flip] = m[flip].transpose(1, 2)
    return m


def _col4(eps: float | Tensor) -> float | Tensor:
    """A float as it is; an (m,) per-sample radius as (m, 1, 1, 1) for broadcasting."""
    return eps if not isinstance(eps, Tensor) else eps.reshape(-1, 1, 1, 1)


@dataclass(frozen=True)
class Square:
    """Score-based Square attack, Linf or L2, untargeted or targeted.

    Args:
        threat: the LpBall ("linf" or "l2"; eps in [0, 1] pixel units).
        max_queries: per-sample query budget, every query counted (clean input included).
        p_init: initial fraction of the image area a square window covers (0.8 in the paper
            for Linf; 0.1 is the usual choice for L2 on small images).
        seed: seed of the random windows and signs; the same seed gives the same x_adv.
        loss: "margin" (on the scores; recommended, and the one untargeted success follows)
            or "ce" (scores taken as logits).

    Returns points inside the ball and the [0, 1] box; ``success`` and the kept point are the
    model's verdict at exactly the returned point; ``queries`` holds the per-sample count.
    """

    threat: LpBall
    max_queries: int = 5000
    p_init: float = 0.8
    seed: int | None = 0
    loss: str = "margin"

    def __post_init__(self) -> None:
        check_lp(self.threat)
        if self.threat.norm not in ("linf", "l2"):
            raise ValueError(f"threat: Square supports linf and l2, got {self.threat.norm!r}")
        check_positive_int(self.max_queries, "max_queries")
        if isinstance(self.p_init, bool) or not isinstance(self.p_init, (int, float)) or not 0 < self.p_init <= 1:
            raise ValueError(f"p_init: expected a fraction in (0, 1], got {self.p_init!r}")
        if self.loss not in ("margin", "ce"):
            raise ValueError(f"loss: expected 'margin' or 'ce', got {self.loss!r}")

    @property
    def name(self) -> str:
        return f"Square-{self.max_queries}"

    def __call__(self, model: object, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """Attack a batch.

        Args:
            model: an nn.Module or a callable mapping (N, C, H, W) inputs in [0, 1] to (N, K)
                scores (logits or probabilities); never differentiated.
            x: (N, C, H, W) clean images in [0, 1], or (N, C, T) signals (audio: (N, 1, T)).
            y: (N,) int64 true labels.
            target: (N,) int64 target classes for a targeted attack, or None.
        """
        check_blackbox_inputs(model, x, y, target)
        require_scores(model, "Square")
        if x.dim() not in (2, 3, 4):
            raise ValueError(f"x: Square expects images (N, C, H, W) or signals (N, C, T) / (N, T), "
                             f"got shape {tuple(x.shape)}")
        y = y.to(torch.int64)
        target = None if target is None else target.to(torch.int64)
        gen = make_generator(self.seed, x.device)
        with ModelGuard(model):
            q = Queries(model, x.shape[0], x.device)
            if x.dim() < 4:  # signals: searched as (N, C, 1, T), sent to the model as (N, C, T) / (N, T)
                view = x.reshape(x.shape[0], -1 if x.dim() == 3 else 1, 1, x.shape[-1])
                x_best, success = self._run(_SignalQueries(q, tuple(x.shape[1:])), view, y, target, gen)
                x_best = x_best.reshape(x.shape)
            else:
                x_best, success = self._run(q, x, y, target, gen)
        x_best = x_best.detach()
        return AttackResult(
            x_adv=x_best, success=success, distance=self.threat.distance(x_best, x),
            forward_calls=q.total, backward_calls=0, queries=q.per_sample.clone(),
        )

    # -- the search -------------------------------------------------------------------------
    def _project(self, cand: Tensor, x: Tensor, tail: tuple[int, ...] | None = None) -> Tensor:
        """The threat's projection; (M, C, 1, T) views of signals go through in their own shape
        (M, *tail)."""
        if tail is not None:
            m = cand.shape[0]
            return self.threat.project(cand.reshape(m, *tail), x.reshape(m, *tail)).reshape(cand.shape)
        return self.threat.project(cand, x)

    def _run(self, q: Queries | _SignalQueries, x: Tensor, y: Tensor, target: Tensor | None,
             gen: torch.Generator):
        """The search on (N, C, H, W) images, or (N, C, 1, T) views of signals (``q`` then a
        :class:`_SignalQueries`)."""
        threat = self.threat
        n, ch, h, w = x.shape
        # A per-sample budget (a dB ball, ...) gives an (N,) radius; an LpBall its one float.
        tail = q.tail if isinstance(q, _SignalQueries) else None
        if tail is not None:
            eps_all = (threat.eps if isinstance(threat, LpBall)
                       else threat.radius(x.reshape(n, *tail)).to(x.dtype))
        else:
            eps_all = threat.eps if isinstance(threat, LpBall) else threat.radius(x).to(x.dtype)
        linf = threat.norm == "linf"
        dev = x.device
        x_best = x.clone()

        def tgt(idx: Tensor) -> Tensor | None:
            return None if target is None else target[idx]

        first = first_query(q, x, y, target, self.loss, self.name)
        if first is None:
            return x_best, torch.zeros(n, dtype=torch.bool, device=dev)
        success, loss_best = first
        if self.max_queries < 2 or bool((torch.as_tensor(eps_all) == 0).all()):
            return x_best, success

        def eps_of(idx: Tensor) -> float | Tensor:
            return eps_all if not isinstance(eps_all, Tensor) else eps_all[idx]

        try:
            # Initial point: vertical stripes of +-eps (Linf), or a grid of bumps of random
            # sign with total norm eps (L2). Accepted whatever its loss: the search walks from it.
            idx = (~success).nonzero().squeeze(1)
            if idx.numel():
                xi = x[idx]
                if linf:
                    signs = torch.randint(0, 2, (idx.numel(), ch, 1, w), generator=gen, device=dev) * 2 - 1
                    cand = self._project(xi + _col4(eps_of(idx)) * signs.to(x.dtype), xi, tail)
                elif tail is not None:
                    cand = self._project(xi + self._l2_init_1d(xi, eps_of(idx), gen), xi, tail)
                else:
                    cand = self._project(xi + self._l2_init(xi, eps_of(idx), gen), xi)
                sc = q.scores(cand, idx)
                x_best[idx] = cand
                loss_best[idx] = score_loss(self.loss, sc, y[idx], tgt(idx))
                success[idx] = is_success(sc, y[idx], tgt(idx))

            n_iters = self.max_queries - 2
            for it in range(n_iters):
                idx = (~success).nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                xi, xb = x[idx], x_best[idx]
                p = square_fraction(self.p_init, it, n_iters)
                if linf:
                    cand = self._linf_step(xi, xb, p, eps_of(idx), gen, tail)
                else:
                    cand = self._l2_step(xi, xb, p, eps_of(idx), gen, tail)
                sc = q.scores(cand, idx)
                accept(idx, cand, sc, y, target, self.loss, x_best, loss_best, success)
        except QueryBudgetExceeded as e:
            budget_stop(self.name, e, q)
        return x_best, success

    def _linf_step(self, x: Tensor, xb: Tensor, p: float, eps: float | Tensor, gen: torch.Generator,
                   tail: tuple[int, ...] | None = None) -> Tensor:
        m, ch, h, w = x.shape
        if tail is not None:  # a run of s * s samples, s = round(sqrt(p T))
            s = max(int(round(math.sqrt(p * w))), 1)
            bi, ri, ci = _run_index(m, min(s * s, w), w, gen, x.device)
        else:
            s = min(max(int(round(math.sqrt(p * h * w))), 1), h, w)
            bi, ri, ci = _window_index(m, s, h, w, gen, x.device)
        xw = x[bi, :, ri, ci]  # (m, s, s, C); signals (m, 1, s * s, C)
        old = xb[bi, :, ri, ci]
        new = old
        todo = torch.ones(m, dtype=torch.bool, device=x.device)
        # Resample the signs where the window would not change (e.g. clipped at the box edge).
        for _ in range(10):
            signs = (torch.randint(0, 2, (m, 1, 1, ch), generator=gen, device=x.device) * 2 - 1).to(x.dtype)
            trial = (xw + _col4(eps) * signs).clamp(0.0, 1.0)
            new = torch.where(todo[:, None, None, None], trial, new)
            todo = (new == old).flatten(1).all(dim=1)
            if not bool(todo.any()):
                break
        cand = xb.clone()
        cand[bi, :, ri, ci] = new
        return self._project(cand, x, tail)

    def _l2_init(self, x: Tensor, eps: float | Tensor, gen: torch.Generator) -> Tensor:
        m, ch, h, w = x.shape
        t = max(h // 5, 1)
        delta = torch.zeros_like(x)
        bump = _bump(t, x.dtype, x.device)
        for r in range(0, h - t + 1, t):
            for c in range(0, w - t + 1, t):
                signs = (torch.randint(0, 2, (m, ch, 1, 1), generator=gen, device=x.device) * 2 - 1).to(x.dtype)
                delta[:, :, r:r + t, c:c + t] = bump * signs
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        return delta * (eps / norms)[:, None, None, None]

    def _l2_init_1d(self, x: Tensor, eps: float | Tensor, gen: torch.Generator) -> Tensor:
        """Signals (m, C, 1, T): 25 runs of T // 25 samples, each a bump of random sign per
        channel, scaled to total norm eps."""
        m, ch, _, w = x.shape
        t = max(w // 25, 1)
        delta = torch.zeros_like(x)
        bump = _bump_1d(t, x.dtype, x.device)
        for c in range(0, w - t + 1, t):
            signs = (torch.randint(0, 2, (m, ch, 1, 1), generator=gen, device=x.device) * 2 - 1).to(x.dtype)
            delta[:, :, :, c:c + t] = bump * signs
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        return delta * (_col4(eps) / norms[:, None, None, None])

    def _l2_step(self, x: Tensor, xb: Tensor, p: float, eps: float | Tensor, gen: torch.Generator,
                 tail: tuple[int, ...] | None = None) -> Tensor:
        if tail is not None:
            return self._l2_step_1d(x, xb, p, eps, gen, tail)
        m, ch, h, w = x.shape
        s = min(max(int(round(math.sqrt(p * h * w))), 3), h, w)
        delta = xb - x
        b1, r1, c1 = _window_index(m, s, h, w, gen, x.device)
        _, r2, c2 = _window_index(m, s, h, w, gen, x.device)
        union = torch.zeros(m, h, w, dtype=torch.bool, device=x.device)
        union[b1, r1, c1] = True
        union[b1, r2, c2] = True
        u = union[:, None].to(x.dtype)
        # Mass available per channel: what both windows hold now plus an equal share of the
        # unused budget eps^2 - ||delta||^2.
        spare = (eps ** 2 - delta.flatten(1).pow(2).sum(dim=1)).clamp_min(0.0)
        mass = (delta * u).pow(2).sum(dim=(2, 3)) + spare[:, None] / ch  # (m, C)
        radius = mass.sqrt()
        meta = _meta(m, s, gen, x.dtype, x.device)  # (m, s, s)
        signs = (torch.randint(0, 2, (m, ch), generator=gen, device=x.device) * 2 - 1).to(x.dtype)
        old = delta[b1, :, r1, c1]  # (m, s, s, C)
        new = old + meta[..., None] * (signs * radius)[:, None, None, :]
        new_norm = new.pow(2).sum(dim=(1, 2)).sqrt().clamp_min(1e-12)  # (m, C)
        new = new * (radius / new_norm)[:, None, None, :]
        delta = delta * (1 - u)
        delta[b1, :, r1, c1] = new
        return self._project(x + delta, x)

    def _l2_step_1d(self, x: Tensor, xb: Tensor, p: float, eps: float | Tensor, gen: torch.Generator,
                    tail: tuple[int, ...]) -> Tensor:
        """:meth:`_l2_step` on (m, C, 1, T) signal views: runs of s * s samples instead of
        s x s windows (s >= 2, so a half-bump has two signs)."""
        m, ch, _, w = x.shape
        length = min(max(int(round(math.sqrt(p * w))), 2) ** 2, w)
        delta = xb - x
        b1, r1, c1 = _run_index(m, length, w, gen, x.device)
        _, r2, c2 = _run_index(m, length, w, gen, x.device)
        union = torch.zeros(m, 1, w, dtype=torch.bool, device=x.device)
        union[b1, r1, c1] = True
        union[b1, r2, c2] = True
        u = union[:, None].to(x.dtype)
        eps_t = eps.reshape(-1, 1) if isinstance(eps, Tensor) else eps
        spare = (eps_t ** 2 - delta.flatten(1).pow(2).sum(dim=1, keepdim=True)).clamp_min(0.0)  # (m, 1)
        mass = (delta * u).pow(2).sum(dim=(2, 3)) + spare / ch  # (m, C)
        radius = mass.sqrt()
        meta = _meta_1d(m, length, gen, x.dtype, x.device)  # (m, 1, length)
        signs = (torch.randint(0, 2, (m, ch), generator=gen, device=x.device) * 2 - 1).to(x.dtype)
        old = delta[b1, :, r1, c1]  # (m, 1, length, C)
        new = old + meta[..., None] * (signs * radius)[:, None, None, :]
        new_norm = new.pow(2).sum(dim=(1, 2)).sqrt().clamp_min(1e-12)  # (m, C)
        new = new * (radius / new_norm)[:, None, None, :]
        delta = delta * (1 - u)
        delta[b1, :, r1, c1] = new
        return self._project(x + delta, x, tail)
