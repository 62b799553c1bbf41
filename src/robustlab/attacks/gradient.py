"""First-order attacks with a fixed step: FGSM and PGD (Madry et al. 2018) for Linf, L2, L1.

Cost, counted: each step is one forward and one backward pass on the points still active, and
one last forward checks the final iterate. PGD-k on N robust points therefore costs at most
N * k backward and N * (k + 1) forward passes per restart; points leave the batch the moment
they are broken (``early_stop``), so the real cost is usually far lower.
"""
from __future__ import annotations

from dataclasses import dataclass

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
from robustlab.results import AttackResult
from robustlab.threats import LpBall
from robustlab.validation import check_nonneg_float, check_positive_int


def _check_threat(threat: object) -> None:
    if not isinstance(threat, LpBall):
        raise TypeError(f"threat: expected an LpBall, got {type(threat).__name__}")


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
        loss: "ce" (cross-entropy) or "margin" (C&W margin on logits).
        early_stop: drop a point from the batch once it is misclassified (or hits the target).
            Off: keep ascending the loss on every point for ``steps`` steps.
        l1_sparsity: for L1, the fraction of coordinates left out of each step.
        seed: seed of the random starts; the same seed gives the same x_adv.
    """

    threat: LpBall
    steps: int = 40
    restarts: int = 1
    step_size: float | None = None
    random_start: bool = True
    loss: str = "ce"
    early_stop: bool = True
    l1_sparsity: float = 0.95
    seed: int | None = 0

    def __post_init__(self) -> None:
        _check_threat(self.threat)
        check_positive_int(self.steps, "steps")
        check_positive_int(self.restarts, "restarts")
        if self.step_size is not None:
            check_nonneg_float(self.step_size, "step_size")
        if self.loss not in ("ce", "margin"):
            raise ValueError(f"loss: expected 'ce' or 'margin', got {self.loss!r}")
        if not 0.0 <= self.l1_sparsity < 1.0:
            raise ValueError(f"l1_sparsity: expected a fraction in [0, 1), got {self.l1_sparsity}")

    @property
    def name(self) -> str:
        r = f"x{self.restarts}" if self.restarts > 1 else ""
        return f"PGD-{self.steps}{r}" + ("" if self.loss == "ce" else f"-{self.loss}")

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
        step = self.step_size if self.step_size is not None else 2.5 * self.threat.eps / self.steps
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
    step_size: float | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        _check_threat(self.threat)
        if self.step_size is not None:
            check_nonneg_float(self.step_size, "step_size")

    @property
    def name(self) -> str:
        return "FGSM"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """Attack a batch; shapes as for :class:`PGD`."""
        return PGD(
            self.threat, steps=1, restarts=1,
            step_size=self.threat.eps if self.step_size is None else self.step_size,
            random_start=self.random_start, seed=self.seed, early_stop=True,
        )(model, x, y, target=target)


def run_pgd(
    counter: Counter,
    threat: LpBall,
    x: Tensor,
    y: Tensor,
    target: Tensor | None,
    *,
    steps: int,
    restarts: int,
    step_size: float,
    random_start: bool,
    loss: str,
    early_stop: bool,
    l1_sparsity: float,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """The PGD loop, shared with training code. Returns the per-sample best point (N, ...) and
    (N,) bool success, both measured by the model at exactly that point."""
    n = x.shape[0]
    best = x.detach().clone()
    best_loss = torch.full((n,), float("-inf"), device=x.device)
    success = torch.zeros(n, dtype=torch.bool, device=x.device)

    def record(idx: Tensor, xs: Tensor, logits: Tensor) -> Tensor:
        """Keep the better of the stored and the new point; return the new points' success."""
        t = None if target is None else target[idx]
        succ = is_success(logits, y[idx], t)
        lv = attack_loss(loss, logits, y[idx], t)
        old_succ = success[idx]
        # A success beats any non-success; among equals, the higher loss wins.
        better = (succ & ~old_succ) | ((succ == old_succ) & (lv > best_loss[idx]))
        if early_stop:
            better = better & ~old_succ
        upd = idx[better]
        best[upd] = xs[better]
        best_loss[upd] = lv[better]
        success[upd] = succ[better]
        return succ

    for r in range(restarts):
        idx = torch.arange(n, device=x.device) if (r == 0 or not early_stop) else (~success).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x0 = x[idx]
        x_cur = threat.random_start(x0, generator) if (random_start or r > 0) else x0.clone()
        for _ in range(steps):
            ti = None if target is None else target[idx]
            yi = y[idx]
            logits, grad = counter.logits_and_grad(x_cur, lambda out: attack_loss(loss, out, yi, ti))
            succ = record(idx, x_cur, logits)
            if early_stop:
                keep = ~succ
                if not bool(keep.all()):
                    idx, x_cur, x0, grad = idx[keep], x_cur[keep], x0[keep], grad[keep]
                    if idx.numel() == 0:
                        break
            direction = threat.steepest_direction(grad, x_cur, l1_sparsity)
            x_cur = threat.project(x_cur + step_size * direction, x0)
        if idx.numel():
            record(idx, x_cur, counter.logits(x_cur))
    return best, success
