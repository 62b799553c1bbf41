"""One-step adversarial training with a regulariser on the step: GradAlign (Andriushchenko &
Flammarion 2020: FGSM plus a penalty on the misalignment of input gradients at x and at a random
point of the ball) and GuidedAT (after Sriramanan et al. 2020's GAT: clean cross-entropy plus a
squared softmax distance, the one step guided by the same term). Both keep ``recipes``' contract:
small frozen dataclasses with ``loss(model, x, y, generator, progress) -> Tensor``.

Screened at MNIST Linf 0.3 on ``mnist_cnn`` (docs/train.md, "Replacements screened"): neither
reached the issue's one-step goal there.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.base import ModelGuard
from robustlab.defenses.training.recipes import _check_common, _check_steps, perturb, ramp, scaled, unwrap
from robustlab.threats import LpBall
from robustlab.validation import check_nonneg_float


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
        check_nonneg_float(self.lam, "lam")

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
            check_nonneg_float(getattr(self, name), name)
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


__all__ = ["GradAlign", "GuidedAT", "input_gradient", "gradient_misalignment", "softmax_distance"]
