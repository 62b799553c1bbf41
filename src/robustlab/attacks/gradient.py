"""First-order attacks with a fixed step: FGSM and PGD (Madry et al. 2018) for Linf, L2, L1.

Cost, counted: each step is one forward and one backward pass on the points still active, and
one last forward checks the final iterate. PGD-k on N robust points therefore costs at most
N * k backward and N * (k + 1) forward passes per restart; points leave the batch the moment
they are broken (``early_stop``), so the real cost is usually far lower.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable, Union

import torch
from torch import Tensor, nn

from robustlab.attacks.base import (
    Counter,
    ModelGuard,
    attack_loss,
    finish,
    is_success,
    make_generator,
    prepare,
)
from robustlab.attacks.losses import rejects
from robustlab.results import AttackResult
from robustlab.threats import LpBall, check_lp
from robustlab.validation import check_nonneg_float, check_positive_int

# A per-sample loss to ascend: (logits (N, K), y (N,), target (N,) or None) -> (N,).
LossFn = Callable[[Tensor, Tensor, Union[Tensor, None]], Tensor]


@dataclass(frozen=True)
class PGD:
    """Projected gradient ascent on a loss inside an Lp ball, with random restarts.

    Args:
        threat: the LpBall (norm and eps in [0, 1] pixel units).
        steps: gradient steps per restart.
        restarts: independent runs; each later run attacks only the points still unbroken,
            and the per-sample best point over all runs is returned.
        step_size: step length in the threat's norm; default 2.5 * eps / steps.
        random_start: start from a uniform point of the ball (always, for restarts > 0).
        loss: "ce" (cross-entropy), "margin" (C&W margin on logits), or a callable
            ``(logits (N, K), y (N,), target (N,) or None) -> (N,)`` per-sample loss (training
            objectives such as TRADES' KL term).
        early_stop: drop a point from the batch once it is misclassified (or hits the target).
            Off: keep ascending the loss on every point for ``steps`` steps.
        l1_sparsity: for L1, the fraction of coordinates left out of each step.
        seed: seed of the random starts; the same seed gives the same x_adv.
    """

    threat: LpBall
    steps: int = 40
    restarts: int = 1
    step_size: float | Tensor | None = None
    random_start: bool = True
    loss: str | LossFn = "ce"
    early_stop: bool = True
    l1_sparsity: float = 0.95
    seed: int | None = 0

    def __post_init__(self) -> None:
        check_lp(self.threat)
        check_positive_int(self.steps, "steps")
        check_positive_int(self.restarts, "restarts")
        if self.step_size is not None and not isinstance(self.step_size, Tensor):  # (N,): a per-sample ball's
            check_nonneg_float(self.step_size, "step_size")
        if not callable(self.loss) and self.loss not in ("ce", "margin"):
            raise ValueError(f"loss: expected 'ce', 'margin' or a callable, got {self.loss!r}")
        if not 0.0 <= self.l1_sparsity < 1.0:
            raise ValueError(f"l1_sparsity: expected a fraction in [0, 1), got {self.l1_sparsity}")

    @property
    def name(self) -> str:
        r = f"x{self.restarts}" if self.restarts > 1 else ""
        loss = self.loss if isinstance(self.loss, str) else getattr(self.loss, "__name__", "custom")
        return f"PGD-{self.steps}{r}" + ("" if self.loss == "ce" else f"-{loss}")

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """Attack a batch.

        Args:
            model: maps (N, C, H, W) inputs in [0, 1] to (N, K) logits.
            x: (N, C, H, W) clean inputs in [0, 1].
            y: (N,) int64 true labels.
            target: (N,) int64 target classes for a targeted attack, or None.
        """
        prepare(model, x, y, target)
        y = y.to(torch.int64)
        target = None if target is None else target.to(torch.int64)
        if self.step_size is not None:
            step: float | Tensor = self.step_size
        elif isinstance(self.threat, LpBall):
            step = 2.5 * self.threat.eps / self.steps
        else:  # a per-sample budget (a dB ball, a state-scaled ball): a per-sample step
            step = 2.5 * self.threat.radius(x).to(x.dtype) / self.steps
        gen = make_generator(self.seed, x.device)
        with ModelGuard(model):
            counter = Counter(model)
            best, success = run_pgd(
                counter, self.threat, x, y, target,
                steps=self.steps, restarts=self.restarts, step_size=step,
                random_start=self.random_start, loss=self.loss, early_stop=self.early_stop,
                l1_sparsity=self.l1_sparsity, generator=gen,
            )
        return finish(self.threat, x, best, success, counter)


@dataclass(frozen=True)
class FGSM:
    """The fast gradient sign method (Goodfellow et al. 2015): one step of length eps.

    For L2 the step follows the normalised gradient; for L1 its SLIDE direction. One forward
    and backward, plus a forward on the result. ``random_start`` gives R+FGSM-style starts
    (then the step is ``step_size``, default eps).
    """

    threat: LpBall
    random_start: bool = False
    step_size: float | Tensor | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        check_lp(self.threat)
        if self.step_size is not None and not isinstance(self.step_size, Tensor):  # (N,): a per-sample ball's
            check_nonneg_float(self.step_size, "step_size")

    @property
    def name(self) -> str:
        return "FGSM"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """Attack a batch; shapes as for :class:`PGD`."""
        return PGD(
            self.threat, steps=1, restarts=1,
            step_size=(self.threat.eps if isinstance(self.threat, LpBall) else self.threat.radius(x).to(x.dtype))
            if self.step_size is None else self.step_size,
            random_start=self.random_start, seed=self.seed, early_stop=True,
        )(model, x, y, target=target)


# ---------------------------------------------------------------------------------------------
# The loop. Its cost is the model's: k forward+backward passes per point (w.r.t. the input
# only; ModelGuard turns parameter gradients off) and one forward on the last iterate. The rest
# is kept small: the per-sample loss comes from the step's own logits (no extra forward), the
# Linf step and projection run in place in the gradient's buffer, the best point is updated
# with an elementwise select while the whole batch is active (no index gathers or host syncs),
# and early stop costs one host sync per step.
# ---------------------------------------------------------------------------------------------

_COMPILED: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


class _FusedCounter(Counter):
    """Experimental, not public: measured by benchmarks/speed.py --compile, it did not beat the
    eager path on a CPU (see benchmarks/results/speed.md), so PGD does not expose it yet.

    A Counter whose forward+backward is one compiled function of (x, y, target): the model's
    logits, the per-sample loss and its gradient w.r.t. x (torch.func.grad, parameters held
    constant). Counted exactly as ``Counter.logits_and_grad``: one forward and one backward
    per sample per call."""

    def __init__(self, model: nn.Module, loss: str, targeted: bool) -> None:
        super().__init__(model)
        cache = _COMPILED.setdefault(model, {})
        key = (loss, targeted)
        if key not in cache:
            def total(xv: Tensor, yv: Tensor, tv: Tensor | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
                out = model(xv)
                lv = attack_loss(loss, out, yv, tv)
                return lv.sum(), (out, lv)

            grad_fn = torch.func.grad(total, has_aux=True)
            cache[key] = torch.compile(grad_fn)
        self._fn = cache[key]

    def fused_logits_and_grad(self, x: Tensor, y: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Logits at ``x``, the per-sample loss, and its gradient w.r.t. ``x``."""
        with torch.no_grad():
            grad, (out, lv) = self._fn(x.detach(), y, target)
        self.forward += x.shape[0]
        self.backward += x.shape[0]
        return out, lv, grad


def _owned(t: Tensor) -> Tensor:
    """``t`` itself if it can be written in place (dense, no overlapping elements), else a copy.
    Gradients from autograd are fresh buffers, except e.g. the expanded gradient of a sum."""
    if t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last):
        return t
    return t.clone()


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    return mask.reshape((-1,) + (1,) * (like.dim() - 1))


def run_pgd(
    counter: Counter,
    threat: LpBall,
    x: Tensor,
    y: Tensor,
    target: Tensor | None,
    *,
    steps: int,
    restarts: int,
    step_size: float | Tensor,
    random_start: bool,
    loss: str | LossFn,
    early_stop: bool,
    l1_sparsity: float,
    generator: torch.Generator,
    last_iterate: bool = False,
    start: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The PGD loop, shared with training code. Returns the per-sample best point (N, ...) and
    (N,) bool success, both measured by the model at exactly that point.

    ``counter`` may be a :class:`_FusedCounter` (the compiled path); any other Counter is
    called through ``logits_and_grad``. ``threat`` is an LpBall, or any Ball with an Lp ``norm``
    whose ``project``/``random_start`` apply its own per-sample radius; ``step_size`` is a float
    or an (N,) tensor (one step length per sample).
    ``loss`` is a name for :func:`attack_loss` or a
    per-sample callable (see :class:`PGD`).

    ``last_iterate`` (training): return the last iterate of one run of ``steps`` steps without
    bookkeeping or the checking forward pass, so the cost is exactly ``steps`` forward+backward
    passes; success is then not measured (all False). Needs ``restarts=1, early_stop=False``.

    ``start`` (training): the (N, ...) point the first run starts from instead of ``x`` or a
    random point; it must lie in the threat around ``x`` (the steps project around ``x``).
    """
    reject = rejects(counter.model)
    loss_of: LossFn = loss if callable(loss) else (lambda out, yv, tv: attack_loss(loss, out, yv, tv, reject))
    if last_iterate and (restarts != 1 or early_stop):
        raise ValueError("last_iterate: needs restarts=1 and early_stop=False")
    n = x.shape[0]
    geometry = threat if isinstance(threat, LpBall) else LpBall(threat.norm, 0.0)
    steps_t = step_size if isinstance(step_size, Tensor) else None  # per-sample steps, sliced with idx
    x = x.detach()
    best = x.clone()
    best_loss = torch.full((n,), float("-inf"), device=x.device)
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    fused = isinstance(counter, _FusedCounter)
    linf = threat.norm == "linf" and isinstance(threat, LpBall) and steps_t is None

    def record(idx: Tensor | None, xs: Tensor, logits: Tensor, lv: Tensor, t: Tensor | None, yi: Tensor) -> Tensor:
        """Keep the better of the stored and the new point; return the new points' success.
        ``idx`` None means the whole batch, in order."""
        succ = is_success(logits, yi, t, reject)
        old_succ = success if idx is None else success[idx]
        old_loss = best_loss if idx is None else best_loss[idx]
        # A success beats any non-success; among equals, the higher loss wins.
        better = (succ & ~old_succ) | ((succ == old_succ) & (lv > old_loss))
        if early_stop:
            better = better & ~old_succ
        if idx is None:
            # Elementwise selects: no gather, no host sync.
            torch.where(_rows(better, xs), xs, best, out=best)
            torch.where(better, lv, best_loss, out=best_loss)
            torch.where(better, succ, success, out=success)
        else:
            upd = idx[better]
            best[upd] = xs[better]
            best_loss[upd] = lv[better]
            success[upd] = succ[better]
        return succ

    for r in range(restarts):
        if r == 0 or not early_stop:
            idx: Tensor | None = None
            x0, yi, ti = x, y, target
            st = steps_t
        else:
            idx = (~success).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            x0, yi, ti = x[idx], y[idx], (None if target is None else target[idx])
            st = None if steps_t is None else steps_t[idx]
        if r == 0 and start is not None:
            x_cur = start.detach().clone()
        else:
            x_cur = threat.random_start(x0, generator) if (random_start or r > 0) else x0.clone()
        for _ in range(steps):
            if fused:
                logits, lv, grad = counter.fused_logits_and_grad(x_cur, yi, ti)  # type: ignore[attr-defined]
            else:
                held: list[Tensor] = []

                def loss_fn(out: Tensor, yi: Tensor = yi, ti: Tensor | None = ti) -> Tensor:
                    v = loss_of(out, yi, ti)
                    held.append(v)
                    return v

                logits, grad = counter.logits_and_grad(x_cur, loss_fn)
                lv = held[-1].detach()
            if last_iterate:
                succ = success  # not measured: the training step needs only the point
            else:
                succ = record(idx, x_cur, logits, lv, ti, yi)
            if early_stop:
                keep = ~succ
                if not bool(keep.all()):  # the one host sync per step
                    if idx is None:
                        idx = torch.arange(n, device=x.device)
                    idx, x_cur, x0, grad, yi = idx[keep], x_cur[keep], x0[keep], grad[keep], yi[keep]
                    ti = None if ti is None else ti[keep]
                    st = None if st is None else st[keep]
                    if idx.numel() == 0:
                        break
            if linf:
                # x0 + clamp(x_cur + a * sign(g) - x0, -eps, eps), clipped to [0, 1]: the same
                # arithmetic, in the same order, as threat.project, written into g's buffer.
                d = _owned(grad).sign_().mul_(step_size).add_(x_cur)
                x_cur = d.sub_(x0).clamp_(-threat.eps, threat.eps).add_(x0).clamp_(0.0, 1.0)
            else:
                direction = geometry.steepest_direction(grad, x_cur, l1_sparsity)
                step = step_size if st is None else st.reshape((-1,) + (1,) * (x_cur.dim() - 1))
                x_cur = threat.project(x_cur + step * direction, x0)
        if last_iterate:
            return x_cur, success
        if idx is None or idx.numel():
            logits = counter.logits(x_cur)
            record(idx, x_cur, logits, loss_of(logits, yi, ti), ti, yi)
    return best, success
