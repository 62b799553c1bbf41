"""Threat models: the set of perturbations an attacker may apply, stated in pixel space [0, 1].

This module imports nothing of robustlab's own (see DESIGN.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Norm = Literal["linf", "l2", "l1"]
NORMS: tuple[str, ...] = ("linf", "l2", "l1")

# Float rounding of (x + delta) - x can exceed eps by a few ulps; checks allow this much.
DIST_TOL = 1e-5


def _flat(t: Tensor) -> Tensor:
    return t.flatten(1) if t.dim() > 1 else t.reshape(t.shape[0], -1)


def _expand(v: Tensor, like: Tensor) -> Tensor:
    """Per-sample values of shape (N,) broadcast against a batch shaped like ``like``."""
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


def project_l1_ball(delta: Tensor, eps: Tensor | float) -> Tensor:
    """Euclidean projection of each sample of ``delta`` (N, ...) onto the L1 ball of radius eps.

    Sort-based algorithm of Duchi et al. (2008), vectorised over the batch. ``eps`` is a float
    or an (N,) tensor.
    """
    n = delta.shape[0]
    v = _flat(delta)
    eps_t = torch.as_tensor(eps, dtype=v.dtype, device=v.device).expand(n)
    a = v.abs()
    inside = a.sum(dim=1) <= eps_t
    mu, _ = torch.sort(a, dim=1, descending=True)
    cums = mu.cumsum(dim=1)
    ar = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
    cond = mu - (cums - eps_t[:, None]) / ar > 0
    rho = cond.to(v.dtype).mul(ar).argmax(dim=1)  # last index where cond holds
    theta = (cums.gather(1, rho[:, None]).squeeze(1) - eps_t) / (rho + 1).to(v.dtype)
    proj = v.sign() * (a - theta[:, None]).clamp_min(0)
    out = torch.where(inside[:, None], v, proj)
    return out.reshape(delta.shape)


@dataclass(frozen=True)
class LpBall:
    """The Lp ball of radius ``eps`` around a clean input, intersected with the [0, 1] box.

    Args:
        norm: "linf", "l2" or "l1".
        eps: radius in pixel units of [0, 1] inputs (e.g. 0.3 for MNIST Linf, 8/255 for CIFAR).
    """

    norm: Norm
    eps: float

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm: expected one of {NORMS}, got {self.norm!r}")
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)):
            raise TypeError(f"eps: expected a number, got {type(self.eps).__name__}")
        if not math.isfinite(self.eps) or self.eps < 0:
            raise ValueError(f"eps: expected a finite number >= 0, got {self.eps}")
        object.__setattr__(self, "eps", float(self.eps))

    @classmethod
    def parse(cls, spec: str) -> "LpBall":
        """Parse "linf:0.3", "l2:1.5" or "linf:8/255"."""
        try:
            norm, eps_s = spec.split(":")
            if "/" in eps_s:
                num, den = eps_s.split("/")
                eps = float(num) / float(den)
            else:
                eps = float(eps_s)
        except ValueError:
            raise ValueError(f"threat: expected NORM:EPS such as 'linf:0.3' or 'l2:1.5', got {spec!r}") from None
        return cls(norm.strip().lower(), eps)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.norm}:{self.eps:g}"

    # -- geometry --------------------------------------------------------------------------
    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Per-sample Lp distance, shape (N,)."""
        d = _flat(x_adv - x)
        if self.norm == "linf":
            return d.abs().amax(dim=1) if d.shape[1] else d.new_zeros(d.shape[0])
        if self.norm == "l2":
            return d.norm(p=2, dim=1)
        return d.abs().sum(dim=1)

    def project(self, x_adv: Tensor, x: Tensor, eps: Tensor | float | None = None) -> Tensor:
        """Project ``x_adv`` into the ball around ``x`` and then into the [0, 1] box.

        Clipping to the box after the ball never leaves the ball: with x in [0, 1], clipping
        moves every coordinate closer to x. ``eps`` overrides the radius (float or (N,) tensor).
        """
        e = self.eps if eps is None else eps
        delta = x_adv - x
        if self.norm == "linf":
            if isinstance(e, Tensor):
                e = _expand(e.to(delta), delta)
                delta = torch.maximum(torch.minimum(delta, e), -e)
            else:
                delta = delta.clamp(-e, e)
        elif self.norm == "l2":
            norms = _flat(delta).norm(p=2, dim=1).clamp_min(1e-12)
            e_t = torch.as_tensor(e, dtype=delta.dtype, device=delta.device)
            factor = torch.clamp(e_t / norms, max=1.0)
            delta = delta * _expand(factor, delta)
        else:
            delta = project_l1_ball(delta, e)
        return (x + delta).clamp(0.0, 1.0)

    def random_start(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A random point of the ball around ``x`` (inside the box), same shape as ``x``."""
        n = x.shape[0]
        if self.norm == "linf":
            u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            delta = (2 * u - 1) * self.eps
        elif self.norm == "l2":
            g = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            g = g / _expand(_flat(g).norm(dim=1).clamp_min(1e-12), g)
            r = torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)
            delta = g * _expand(r * self.eps, g)
        else:
            # Laplace direction normalised to the L1 sphere, radius uniform in [0, eps].
            e = torch.empty(x.shape, device=x.device, dtype=x.dtype).exponential_(generator=generator)
            s = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
            g = e * s
            g = g / _expand(_flat(g).abs().sum(dim=1).clamp_min(1e-12), g)
            r = torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)
            delta = g * _expand(r * self.eps, g)
        return self.project(x + delta, x)

    def steepest_direction(self, grad: Tensor, x_adv: Tensor | None = None, sparsity: float = 0.99) -> Tensor:
        """The unit-norm ascent direction of the norm for a gradient ``grad`` (N, ...).

        linf: sign(g); l2: g / ||g||_2; l1: sign(g) on the top (1 - sparsity) fraction of
        coordinates by |g| (the SLIDE direction of Tramer & Boneh 2019), normalised to L1 norm
        1. For l1, coordinates of ``x_adv`` pinned at the box edge in the ascent direction are
        skipped, so the step is not wasted on them.
        """
        if self.norm == "linf":
            return grad.sign()
        if self.norm == "l2":
            return grad / _expand(_flat(grad).norm(dim=1).clamp_min(1e-12), grad)
        g = grad.clone()
        if x_adv is not None:
            blocked = ((x_adv <= 0) & (g < 0)) | ((x_adv >= 1) & (g > 0))
            g = g.masked_fill(blocked, 0.0)
        a = _flat(g).abs()
        k = max(1, int(round((1.0 - sparsity) * a.shape[1])))
        thresh = a.topk(k, dim=1).values[:, -1:]
        keep = (a >= thresh) & (a > 0)
        d = _flat(g).sign() * keep
        d = d / d.abs().sum(dim=1, keepdim=True).clamp_min(1.0)
        return d.reshape(grad.shape)


def check_threat(threat: object, name: str = "threat") -> LpBall:
    """Return ``threat`` if it is an LpBall, else raise a TypeError naming the argument."""
    if not isinstance(threat, LpBall):
        raise TypeError(f"{name}: expected an LpBall, got {type(threat).__name__}")
    return threat
