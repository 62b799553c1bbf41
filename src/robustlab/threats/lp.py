"""Lp balls in input space [0, 1] and all their geometry: distances, projections (onto the
ball, onto the L1 ball intersected with the box), random starts and steepest-ascent directions.

This module imports only ``threats.base`` (see DESIGN.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from robustlab.threats.base import DIST_TOL, within  # noqa: F401 (DIST_TOL: where it used to live)

Norm = Literal["linf", "l2", "l1"]
NORMS: tuple[str, ...] = ("linf", "l2", "l1")

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
        bad = f"threat: expected NORM:EPS such as 'linf:0.3', 'l2:1.5' or 'linf:8/255', got {spec!r}"
        if not isinstance(spec, str):
            raise TypeError(f"threat: expected a string such as 'linf:0.3', got {type(spec).__name__}")
        try:
            norm, eps_s = spec.split(":")
            if "/" in eps_s:
                num, den = eps_s.split("/")
                if float(den) == 0:
                    raise ValueError(f"threat: the denominator of {eps_s!r} is zero")
                eps = float(num) / float(den)
            else:
                eps = float(eps_s)
        except ValueError as e:
            raise ValueError(str(e) if "denominator" in str(e) else bad) from None
        return cls(norm.strip().lower(), eps)  # type: ignore[arg-type]

    def spec(self) -> str:
        """The stored and shown form, e.g. "linf:0.3" (part of every run id: never change it)."""
        return f"{self.norm}:{self.eps:g}"

    def __str__(self) -> str:
        return self.spec()

    # -- the threat protocol ---------------------------------------------------------------
    def validate(self, x: object, name: str = "x") -> None:
        """Raise ValueError/TypeError naming ``name`` unless x is a float tensor (N, ...) in [0, 1]."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")
        if x.dim() < 2:
            raise ValueError(f"{name}: expected a batch (N, ...), got shape {tuple(x.shape)}")
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}: contains NaN or Inf")
        if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
            raise ValueError(f"{name}: values must lie in [0, 1], got [{float(x.min()):.4g}, {float(x.max()):.4g}]")

    def radius(self, x: Tensor) -> Tensor:
        """(N,) the budget of each sample: ``eps`` for every one (float32, on x's device)."""
        return torch.full((x.shape[0],), self.eps, dtype=torch.float32, device=x.device)

    def admits(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """(N,) bool: inside the ball (up to float rounding) and inside the [0, 1] box."""
        if x_adv.shape != x.shape:
            return torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        box = (_flat(x_adv) >= 0).all(dim=1) & (_flat(x_adv) <= 1).all(dim=1) & torch.isfinite(_flat(x_adv)).all(dim=1)
        return box & within(self.distance(x_adv, x), self.eps)

    # -- geometry --------------------------------------------------------------------------
    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Per-sample Lp distance, shape (N,), measured in float32 (or float64 for float64 input)
        so that a half-precision input is not judged by its rounding."""
        dt = torch.float64 if x.dtype == torch.float64 else torch.float32
        d = _flat(x_adv.to(dt) - x.to(dt))
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


# -- geometry shared by the Lp attacks (APGD, FAB, the diagnostics) -----------------------------
def _expand_like(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


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


def project_box(norm: str, v: Tensor, x: Tensor, eps: float) -> Tensor:
    """Projection onto the Lp ball of radius eps around x intersected with the [0, 1] box (exact
    for L1, where ball-then-box is not the nearest point)."""
    if norm == "l1":
        out = project_l1_box(v, x, eps)
        # Float summation can leave the L1 norm a few ulps over eps; shrink those by a hair.
        return LpBall("l1", eps).project(out, x)
    return LpBall(norm, eps).project(v, x)  # type: ignore[arg-type]


def sphere_start(norm: str, x: Tensor, eps: float, gen: torch.Generator) -> Tensor:
    """A random point on (Linf, L2) or projected onto (L1) the sphere of radius eps, in the box."""
    if norm == "linf":
        u = 2 * torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) - 1
        u = u / _expand_like(_flat(u).abs().amax(dim=1).clamp_min(1e-12), u)
        return project_box(norm, x + eps * u, x, eps)
    g = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    if norm == "l2":
        g = g / _expand_like(_flat(g).norm(dim=1).clamp_min(1e-12), g)
        return project_box(norm, x + eps * g, x, eps)
    return project_box(norm, x + g, x, eps)


def sparse_l1_direction(grad: Tensor, x_cur: Tensor, frac: Tensor) -> Tensor:
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


def unit_direction(norm: str, grad: Tensor) -> Tensor:
    """sign(g) for linf, g / ||g||_2 otherwise."""
    if norm == "linf":
        return grad.sign()
    return grad / _expand_like(_flat(grad).norm(dim=1).clamp_min(1e-12), grad)


def box_radius(norm: str, x: Tensor) -> float:
    """The radius at which an Lp ball covers the whole [0, 1] box of inputs shaped like x[0]."""
    d = x[0].numel()
    return {"linf": 1.0, "l2": math.sqrt(d), "l1": float(d)}[norm]


def surface_point(threat: "LpBall", x: Tensor, gen: torch.Generator) -> Tensor:
    """A random point on the ball's surface (linf: a random corner), inside the box."""
    if threat.norm == "linf":
        s = torch.randint(0, 2, x.shape, generator=gen, device=x.device).to(x.dtype) * 2 - 1
        return threat.project(x + threat.eps * s, x)
    if threat.norm == "l2":
        g = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        g = g / _expand_like(_flat(g).norm(dim=1).clamp_min(1e-12), g)
        return threat.project(x + threat.eps * g, x)
    return threat.random_start(x, gen)


def check_lp(threat: object, name: str = "threat") -> LpBall:
    """Return ``threat`` if the Lp-geometry attacks can walk it: an LpBall, or any Ball with an
    Lp ``norm`` attribute and a per-sample ``radius(x)`` (e.g. a dB budget on audio, a
    state-scaled ball on observations). Else raise a TypeError naming the argument."""
    if isinstance(threat, LpBall):
        return threat
    if getattr(threat, "norm", None) in NORMS and all(
            callable(getattr(threat, m, None)) for m in ("spec", "radius", "project", "random_start", "distance")):
        return threat  # type: ignore[return-value]
    raise TypeError(f"{name}: expected an LpBall (or a Ball with an Lp norm), got {type(threat).__name__}")
