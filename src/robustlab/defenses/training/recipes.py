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
            loss: str | LossFn = "ce") -> Tensor:
    """The last iterate of ``steps`` PGD steps on ``loss`` inside ``threat`` around ``x``.

    Runs the attack loop on the bare model in eval mode with parameter gradients off (restored
    afterwards, BatchNorm statistics included): ``steps`` forward+backward passes on the input,
    nothing else. Returns (B, ...) detached points in the threat.
    """
    net = unwrap(model)
    with ModelGuard(net, warn=False):
        x_adv, _ = run_pgd(
            Counter(net), threat, x, y, None, steps=steps, restarts=1, step_size=step_size,
            random_start=random_start, loss=loss, early_stop=False, l1_sparsity=0.95,
            generator=generator, last_iterate=True,
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


def input_gradient(model: nn.Module, x: Tensor, y: Tensor, *, create_graph: bool) -> Tensor:
    """The (B, ...) gradient of the summed cross-entropy of ``model`` with respect to ``x``.

    ``create_graph=True`` keeps the graph to the parameters (double backprop: a loss built on
    the result trains the model through it); False returns a detached gradient. Sample i's row
    is the gradient of its own loss (the samples do not interact in a model without batch
    statistics)."""
    xg = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(xg), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, xg, create_graph=create_graph)
    return g if create_graph else g.detach()


def gradient_misalignment(g1: Tensor, g2: Tensor) -> Tensor:
    """``1 - mean_i cos(g1_i, g2_i)``: the GradAlign penalty of two (B, ...) input gradients.

    Samples where either gradient is exactly zero have no direction and are left out of the
    mean; with none left the result is 0 (keeping the graph of ``g2``). A scalar in [0, 2]."""
    a, b = g1.reshape(g1.shape[0], -1), g2.reshape(g2.shape[0], -1)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    keep = (na > 0) & (nb > 0)
    if not bool(keep.any()):
        return (b * 0).sum()
    cos = (a[keep] * b[keep]).sum(dim=1) / (na[keep] * nb[keep])
    return 1.0 - cos.mean()


@dataclass(frozen=True)
class GradAlign:
    """FGSM training with the GradAlign regulariser (Andriushchenko & Flammarion 2020).

    The loss is the cross-entropy at the FGSM point (one signed step of ``alpha`` from ``x``, or
    from a uniform random start, projected to the ball) plus ``lam * (1 - cos)``, where cos is
    the mean cosine between the input gradient of the loss at ``x`` (detached) and at a
    uniformly random point of the ball around ``x`` (kept in the graph). The penalty keeps the
    loss locally linear inside the ball, so the one-step point stays a good approximation of the
    worst case (catastrophic overfitting is the loss of that linearity).

    Cost per step: one input-gradient pass at ``x`` (the FGSM direction and the penalty's first
    gradient), one with ``create_graph`` at the random point, and the final forward+backward,
    which double-backpropagates through that gradient: about 2.1x a :class:`FastAT` step on
    ``mnist_cnn``, 3.5x a standard one. Without a random start only one attack gradient is
    taken per step.

    Args:
        threat: the Linf LpBall trained against (e.g. LpBall("linf", 0.3)).
        lam: weight of the penalty (the paper's lambda: 0.2 at CIFAR-10 eps 8/255, larger for
            larger eps).
        alpha: FGSM step length; default eps (the paper's FGSM + GradAlign).
        random_start: start the FGSM step at a uniform point of the ball (default: at ``x``).
        warmup: eps (alpha and the noise with it) ramps from 0 over this fraction of training.

    Single-process only: the penalty needs a second forward with a graph to the parameters,
    which DistributedDataParallel's one-forward-per-backward contract does not allow.
    """

    threat: LpBall
    lam: float = 1.0
    alpha: float | None = None
    random_start: bool = False
    warmup: float = 0.0

    def __post_init__(self) -> None:
        _check_common(self.threat, self.warmup)
        if self.threat.norm != "linf":
            raise ValueError(f"threat: GradAlign is defined for linf balls, got {self.threat.norm!r}")
        _check_steps(1, self.alpha)
        if isinstance(self.lam, bool) or not isinstance(self.lam, (int, float)) or not math.isfinite(self.lam) \
                or self.lam < 0:
            raise ValueError(f"lam: expected a finite number >= 0, got {self.lam!r}")

    def points(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
               progress: float) -> tuple[Tensor, Tensor | None, LpBall | None]:
        """The (B, ...) FGSM training points in the (ramped) threat around ``x``, the detached
        (B, ...) input gradient at ``x`` (None when the ramp is still at 0) and the ramped threat.

        Without a random start the FGSM step is taken on that same gradient (so the step and
        the penalty share one backward pass); the points equal
        ``perturb(model, threat, x, y, generator, steps=1, step_size=alpha, random_start=False)``.
        With a random start the step comes from :func:`perturb` (one more pass)."""
        f = ramp(progress, self.warmup)
        if f == 0:
            return x, None, None
        t = scaled(self.threat, f)
        alpha = f * (self.alpha if self.alpha is not None else self.threat.eps)
        net = unwrap(model)
        with ModelGuard(net, warn=False):  # eval mode, parameter gradients off: input gradient only
            g1 = input_gradient(net, x, y, create_graph=False)
        if self.random_start:
            x_adv = perturb(model, t, x, y, generator, steps=1, step_size=alpha, random_start=True)
        else:
            x_adv = t.project(x + alpha * g1.sign(), x)
        return x_adv.detach(), g1, t

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
             progress: float) -> Tensor:
        if unwrap(model) is not model:
            raise TypeError("model: GradAlign does not run under DistributedDataParallel (see the class docstring)")
        x_adv, g1, t = self.points(model, x, y, generator, progress)
        ce = F.cross_entropy(model(x_adv), y)
        if g1 is None or t is None or self.lam == 0:
            return ce
        # the gradient at a uniform point of the ball, with its graph: the penalty trains through it
        g2 = input_gradient(model, t.random_start(x, generator), y, create_graph=True)
        return ce + self.lam * gradient_misalignment(g1, g2)

    def spec(self) -> str:
        return (f"gradalign:{self.threat.spec()}:lam={self.lam}:alpha={self.alpha}"
                f":rs={int(self.random_start)}:warmup={self.warmup}")


def softmax_distance(logits_a: Tensor, p_b: Tensor) -> Tensor:
    """Per-sample squared L2 distance ``||softmax(logits_a) - p_b||^2`` over the K classes.

    ``logits_a`` (B, K) logits, ``p_b`` (B, K) probabilities; returns (B,)."""
    return (F.softmax(logits_a, dim=1) - p_b).pow(2).sum(dim=1)


@dataclass(frozen=True)
class GuidedAT:
    """One-step guided adversarial training, after GAT (Sriramanan et al. 2020).

    The training loss is the clean cross-entropy plus ``lam`` times the squared L2 distance
    between the softmax outputs at the clean point and at the adversarial point (a TRADES-like
    consistency term, bounded where TRADES' KL is not). The adversarial point is one signed
    step of ``alpha`` from a Bernoulli start (each pixel moved by +-``noise * eps``), ascending
    the cross-entropy plus the same ``lam``-weighted distance to the clean prediction (the
    "guide" that keeps the one step informative where the cross-entropy's gradient alone
    misleads), projected to the ball. No label enters the training term on the adversarial
    point, so the step cannot leak it (FGSM points at MNIST eps 0.3 do: a model trained on
    them alone reads the class off the perturbation and fails on clean images).

    Cost per step: one clean forward without a graph, one forward+backward for the step (input
    gradient only), and the training forward+backward on the 2B clean and adversarial rows:
    about 1.6x a :class:`FastAT` step. One attack gradient per step.

    Args:
        threat: the Linf LpBall trained against.
        lam: weight of the distance term, in the step and in the training loss.
        boost: ``lam`` is multiplied by this from ``boost_at`` (fraction of training) on
            (1: constant).
        boost_at: where the boost starts.
        noise: Bernoulli start magnitude as a fraction of eps (0: start at the clean point).
        alpha: step length; default eps.
        warmup: eps (alpha and the start with it) ramps from 0 over this fraction of training.
    """

    threat: LpBall
    lam: float = 15.0
    boost: float = 3.0
    boost_at: float = 0.5
    noise: float = 0.5
    alpha: float | None = None
    warmup: float = 0.0

    def __post_init__(self) -> None:
        _check_common(self.threat, self.warmup)
        if self.threat.norm != "linf":
            raise ValueError(f"threat: GuidedAT is defined for linf balls, got {self.threat.norm!r}")
        _check_steps(1, self.alpha)
        for name in ("lam", "boost", "noise"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
        if not isinstance(self.boost_at, (int, float)) or not 0.0 <= self.boost_at <= 1.0:
            raise ValueError(f"boost_at: expected a fraction of training in [0, 1], got {self.boost_at!r}")

    def weight(self, progress: float) -> float:
        """The distance weight at ``progress``: ``lam``, times ``boost`` from ``boost_at`` on."""
        return self.lam * (self.boost if progress >= self.boost_at else 1.0)

    def points(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
               progress: float) -> Tensor:
        """The (B, ...) adversarial training points in the (ramped) threat around ``x``."""
        f = ramp(progress, self.warmup)
        if f == 0:
            return x
        t = scaled(self.threat, f)
        alpha = f * (self.alpha if self.alpha is not None else self.threat.eps)
        lam = self.weight(progress)
        net = unwrap(model)
        with torch.no_grad(), ModelGuard(net, warn=False):
            p_clean = F.softmax(net(x), dim=1)

        def guided(logits: Tensor, yv: Tensor, tv: Tensor | None) -> Tensor:
            return F.cross_entropy(logits, yv, reduction="none") + lam * softmax_distance(logits, p_clean)

        sign = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
        x0 = t.project(x + self.noise * t.eps * sign, x)
        # one step in a ball of radius alpha around the start, then back into the threat around x
        x1 = perturb(model, replace(t, eps=alpha), x0, y, generator, steps=1, step_size=alpha,
                     random_start=False, loss=guided)
        return t.project(x1, x)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
             progress: float) -> Tensor:
        x_adv = self.points(model, x, y, generator, progress)
        logits = model(torch.cat([x, x_adv]))
        clean, adv = logits[: x.shape[0]], logits[x.shape[0]:]
        return F.cross_entropy(clean, y) + self.weight(progress) * softmax_distance(adv, F.softmax(clean, dim=1)).mean()

    def spec(self) -> str:
        return (f"guidedat:{self.threat.spec()}:lam={self.lam}:boost={self.boost}@{self.boost_at}"
                f":noise={self.noise}:alpha={self.alpha}:warmup={self.warmup}")


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


__all__ = ["Recipe", "Standard", "PGDAT", "FastAT", "NFGSM", "GradAlign", "GuidedAT", "TRADES", "softmax_distance", "input_gradient", "gradient_misalignment", "perturb", "cut_at_first_error", "ramp", "scaled", "unwrap",
           "recipe_threat"]
