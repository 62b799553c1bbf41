"""Training recipes: what one optimiser step minimises.

A recipe is a frozen dataclass with one method, ``loss(model, x, y, generator, progress)``
returning a scalar tensor with a graph to the model's parameters (see the package docstring
for the contract). The adversarial recipes find their points with the attack code itself
(:func:`robustlab.attacks.gradient.run_pgd`, with a per-sample loss argument), never a copy.

Shapes: x (B, ...) inputs in [0, 1], y (B,) int64 labels, logits (B, K).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.base import Counter, ModelGuard
from robustlab.attacks.gradient import LossFn, run_pgd
from robustlab.threats import LpBall, check_lp


@runtime_checkable
class Recipe(Protocol):
    """What ``train`` calls once per optimiser step; see the package docstring."""

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
             progress: float) -> Tensor: ...


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module under a DistributedDataParallel (or DataParallel) wrapper.

    Attacks inside a recipe run on this one: they must not go through DDP's forward, which
    expects every forward to be followed by a gradient all-reduce."""
    return getattr(model, "module", model)


def ramp(progress: float, warmup: float) -> float:
    """The eps multiplier at ``progress`` in [0, 1]: linear from 0 to 1 over the first
    ``warmup`` fraction of training, then 1 (``warmup`` 0: always 1)."""
    if warmup <= 0:
        return 1.0
    return min(1.0, max(0.0, progress) / warmup)


def scaled(threat: LpBall, factor: float) -> LpBall:
    """``threat`` with its radius multiplied by ``factor`` in [0, 1] (the eps ramp)."""
    if factor == 1.0:
        return threat
    if not isinstance(threat, LpBall):
        raise TypeError(f"threat: an eps ramp needs an LpBall, got {type(threat).__name__}; use warmup=0")
    return replace(threat, eps=threat.eps * factor)


def perturb(model: nn.Module, threat: LpBall, x: Tensor, y: Tensor, generator: torch.Generator, *,
            steps: int, step_size: float, random_start: bool = True,
            loss: str | LossFn = "ce", start: Tensor | None = None) -> Tensor:
    """The last iterate of ``steps`` PGD steps on ``loss`` inside ``threat`` around ``x``,
    from ``start`` (a (B, ...) point of the threat around ``x``) when given, else from a
    random point of the ball (``random_start``) or from ``x``.

    Runs the attack loop on the bare model in eval mode with parameter gradients off (restored
    afterwards, BatchNorm statistics included): ``steps`` forward+backward passes on the input,
    nothing else. Returns (B, ...) detached points in the threat.
    """
    net = unwrap(model)
    with ModelGuard(net, warn=False):
        x_adv, _ = run_pgd(
            Counter(net), threat, x, y, None, steps=steps, restarts=1, step_size=step_size,
            random_start=random_start, loss=loss, early_stop=False, l1_sparsity=0.95,
            generator=generator, last_iterate=True, start=start,
        )
    return x_adv.detach()


def cut_at_first_error(model: nn.Module, x0: Tensor, x1: Tensor, y: Tensor, checks: int) -> Tensor:
    """Points on the segments from ``x0`` to ``x1`` (both (B, ...)): for each sample the first of
    the fractions j / checks (j = 1 .. checks - 1) where ``model`` misclassifies, else ``x1``
    (Kim et al. 2021: a one-step training point should not overshoot the decision boundary).
    ``checks - 1`` forward passes on the bare model in eval mode, no backward."""
    if checks < 2:
        return x1
    net = unwrap(model)
    t = torch.ones(x0.shape[0], device=x0.device, dtype=x0.dtype)
    with torch.no_grad(), ModelGuard(net, warn=False):
        for j in range(checks - 1, 0, -1):  # the smallest fooling fraction wins
            frac = j / checks
            wrong = net(x0 + frac * (x1 - x0)).argmax(1) != y
            t = torch.where(wrong, torch.full_like(t, frac), t)
    return x0 + t.reshape((-1,) + (1,) * (x0.dim() - 1)) * (x1 - x0)


def _check_checks(checks: int) -> None:
    if isinstance(checks, bool) or not isinstance(checks, int) or checks < 0:
        raise ValueError(f"checks: expected an int >= 0, got {checks!r}")


def _check_common(threat: LpBall, warmup: float) -> None:
    check_lp(threat)
    if not isinstance(warmup, (int, float)) or not 0.0 <= warmup <= 1.0:
        raise ValueError(f"warmup: expected a fraction of training in [0, 1], got {warmup!r}")


def _check_steps(steps: int, step_size: float | None) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
    if step_size is not None and (not isinstance(step_size, (int, float)) or not step_size > 0):
        raise ValueError(f"step_size: expected a number > 0, got {step_size!r}")


@dataclass(frozen=True)
class Standard:
    """Cross-entropy on the clean batch (one forward+backward pass per step)."""

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
             progress: float) -> Tensor:
        return F.cross_entropy(model(x), y)

    def spec(self) -> str:
        return "standard"


@dataclass(frozen=True)
class PGDAT:
    """PGD adversarial training (Madry et al. 2018): cross-entropy on PGD points of the threat.

    Args:
        threat: the LpBall trained against (e.g. LpBall("linf", 0.3)).
        steps: PGD steps per batch; a step costs one forward+backward pass, so a training step
            costs steps + 1 passes.
        step_size: PGD step length in the threat's norm; default 2.5 * eps / steps.
        random_start: start each PGD run at a uniform point of the ball.
        warmup: eps grows linearly from 0 over this fraction of training (0: no ramp).
    """

    threat: LpBall
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    warmup: float = 0.0

    def __post_init__(self) -> None:
        _check_common(self.threat, self.warmup)
        _check_steps(self.steps, self.step_size)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
             progress: float) -> Tensor:
        f = ramp(progress, self.warmup)
        if f > 0:
            t = scaled(self.threat, f)
            step = f * (self.step_size if self.step_size is not None else 2.5 * self.threat.eps / self.steps)
            x = perturb(model, t, x, y, generator, steps=self.steps, step_size=step,
                        random_start=self.random_start)
        return F.cross_entropy(model(x), y)

    def spec(self) -> str:
        return (f"pgdat:{self.threat.spec()}:steps={self.steps}:step={self.step_size}"
                f":rs={int(self.random_start)}:warmup={self.warmup}")


@dataclass(frozen=True)
class FastAT:
    """Fast adversarial training (Wong et al. 2020): one FGSM step of length ``alpha`` from a
    uniform random start, projected back to the ball; two forward+backward passes per step.

    Args:
        threat: the LpBall trained against.
        alpha: FGSM step length; Wong et al. use 1.25 * eps (MNIST: 0.375 at eps 0.3). Long
            steps without the random start are what overfit catastrophically.
        random_start: start from a uniform point of the ball (False: plain FGSM training).
        warmup: eps (and alpha with it) ramps from 0 over this fraction of training.
        checks: points on the step from the start to the FGSM point checked before training
            on it (Kim et al. 2021; see :func:`cut_at_first_error`); 0 or 1: none.
    """

    threat: LpBall
    alpha: float | None = None
    random_start: bool = True
    warmup: float = 0.0
    checks: int = 0

    def __post_init__(self) -> None:
        _check_common(self.threat, self.warmup)
        _check_steps(1, self.alpha)
        _check_checks(self.checks)

    def points(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
               progress: float) -> Tensor:
        """The (B, ...) training points, in the (ramped) threat around ``x``."""
        f = ramp(progress, self.warmup)
        if f == 0:
            return x
        alpha = f * (self.alpha if self.alpha is not None else 1.25 * self.threat.eps)
        t = scaled(self.threat, f)
        if self.checks < 2:
            return perturb(model, t, x, y, generator, steps=1, step_size=alpha, random_start=self.random_start)
        # the start is needed for the segment: step around it, then project into the ball
        x0 = t.random_start(x, generator) if self.random_start else x
        x1 = t.project(perturb(model, replace(t, eps=alpha), x0, y, generator, steps=1, step_size=alpha,
                               random_start=False), x)
        return cut_at_first_error(model, x0, x1, y, self.checks)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
             progress: float) -> Tensor:
        return F.cross_entropy(model(self.points(model, x, y, generator, progress)), y)

    def spec(self) -> str:
        checks = f":checks={self.checks}" if self.checks else ""
        return (f"fastat:{self.threat.spec()}:alpha={self.alpha}:rs={int(self.random_start)}"
                f":warmup={self.warmup}{checks}")


@dataclass(frozen=True)
class NFGSM:
    """N-FGSM (de Jorge et al. 2022): one gradient-sign step of length ``alpha`` from a random
    point of a ball ``k`` times larger than the threat's, and no projection back to the threat's
    ball (only to the [0, 1] box); two forward+backward passes per step.

    The larger noise and the unclipped step keep the one-step training point informative where
    FGSM with a random start (:class:`FastAT`) overfits catastrophically at large eps. The
    training point lies within ``k * eps + alpha`` of the clean one; the evaluation threat stays
    ``threat``.

    Args:
        threat: the LpBall trained against (e.g. LpBall("linf", 0.3)).
        k: noise radius as a multiple of eps (de Jorge et al.: 2).
        alpha: step length in the threat's norm; default eps (de Jorge et al.).
        warmup: eps (and the noise and alpha with it) ramps from 0 over this fraction of training.
        checks: points on the step checked before training on its end (Kim et al. 2021): the
            step is cut at the first of j / checks (j = 1 .. checks - 1) where the model already
            misclassifies, so the training point does not overshoot the decision boundary
            (the overshoot is where catastrophic overfitting starts); ``checks - 1`` extra
            forward passes, no backward. 0 or 1: no checks (plain N-FGSM).
    """

    threat: LpBall
    k: float = 2.0
    alpha: float | None = None
    warmup: float = 0.0
    checks: int = 0

    def __post_init__(self) -> None:
        _check_common(self.threat, self.warmup)
        _check_steps(1, self.alpha)
        if isinstance(self.k, bool) or not isinstance(self.k, (int, float)) or not math.isfinite(self.k) or self.k < 0:
            raise ValueError(f"k: expected a finite number >= 0 (noise radius in multiples of eps), got {self.k!r}")
        _check_checks(self.checks)

    def points(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
               progress: float) -> Tensor:
        """The (B, ...) training points: noise of radius k * eps, then one step of ``alpha``
        (both scaled by the eps ramp at ``progress``), kept in the [0, 1] box only."""
        f = ramp(progress, self.warmup)
        if f == 0:
            return x
        eps = f * self.threat.eps
        alpha = f * (self.alpha if self.alpha is not None else self.threat.eps)
        x0 = replace(self.threat, eps=self.k * eps).random_start(x, generator) if self.k > 0 else x
        # one step in a ball of radius alpha around the noisy point: no projection to the eps
        # ball around x (the "no clipping" of N-FGSM)
        x1 = perturb(model, replace(self.threat, eps=alpha), x0, y, generator, steps=1,
                     step_size=alpha, random_start=False)
        return cut_at_first_error(model, x0, x1, y, self.checks)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
             progress: float) -> Tensor:
        return F.cross_entropy(model(self.points(model, x, y, generator, progress)), y)

    def spec(self) -> str:
        checks = f":checks={self.checks}" if self.checks else ""  # absent: the specs of earlier runs hold
        return f"nfgsm:{self.threat.spec()}:k={self.k}:alpha={self.alpha}:warmup={self.warmup}{checks}"


@dataclass(frozen=True)
class TRADES:
    """TRADES (Zhang et al. 2019): clean cross-entropy plus ``beta`` times the KL divergence
    from the clean prediction to the prediction at the point of the ball that maximises it.

    The inner maximisation is PGD on the per-sample KL (the attack loop with a callable loss)
    from a uniform random start; the outer loss runs clean and adversarial points through the
    model as one batch of 2B rows. Cost per step: one forward for the KL target, ``steps``
    forward+backward passes on B rows, one on 2B rows. Args as :class:`PGDAT`, plus ``beta``
    (Zhang et al.: 6 for their MNIST and CIFAR-10 tables; their MNIST script defaults to 1).
    """

    threat: LpBall
    beta: float = 1.0
    steps: int = 10
    step_size: float | None = None
    warmup: float = 0.0

    def __post_init__(self) -> None:
        _check_common(self.threat, self.warmup)
        _check_steps(self.steps, self.step_size)
        if not isinstance(self.beta, (int, float)) or not math.isfinite(self.beta) or self.beta < 0:
            raise ValueError(f"beta: expected a finite number >= 0, got {self.beta!r}")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
             progress: float) -> Tensor:
        f = ramp(progress, self.warmup)
        if f > 0:
            net = unwrap(model)
            with torch.no_grad(), ModelGuard(net, warn=False):
                p_clean = F.softmax(net(x), dim=1)

            def kl(logits: Tensor, yv: Tensor, tv: Tensor | None) -> Tensor:
                return F.kl_div(F.log_softmax(logits, dim=1), p_clean, reduction="none").sum(dim=1)

            step = f * (self.step_size if self.step_size is not None else 2.5 * self.threat.eps / self.steps)
            x_adv = perturb(model, scaled(self.threat, f), x, y, generator, steps=self.steps,
                            step_size=step, loss=kl)
        else:
            x_adv = x
        logits = model(torch.cat([x, x_adv]))
        clean, adv = logits[: x.shape[0]], logits[x.shape[0]:]
        robust = F.kl_div(F.log_softmax(adv, dim=1), F.softmax(clean, dim=1), reduction="batchmean")
        return F.cross_entropy(clean, y) + self.beta * robust

    def spec(self) -> str:
        return (f"trades:{self.threat.spec()}:beta={self.beta}:steps={self.steps}"
                f":step={self.step_size}:warmup={self.warmup}")


def recipe_threat(recipe: object) -> LpBall | None:
    """The threat a recipe trains against (its ``threat`` attribute), or None."""
    return getattr(recipe, "threat", None)


__all__ = ["Recipe", "Standard", "PGDAT", "FastAT", "NFGSM", "TRADES", "perturb", "cut_at_first_error", "ramp", "scaled",
           "unwrap", "recipe_threat"]
