"""The state-scaled observation ball of reinforcement learning: an Linf ball whose radius in
each observation dimension is ``eps`` times that dimension's standard deviation over the
policy's own state distribution (Zhang et al. 2020, SA-MDP; the usual "state-scaled eps").

    StateBall.parse("state:0.1")            unbound: the scale comes from the policy
    ball = StateBall(0.1).bind(policy.state_std)
    ball.distance(x_adv, x)                 (N,) max_i |x_adv_i - x_i| / std_i  (units of eps)

Observations are raw environment units, unbounded: there is no input box. The ball's ``norm``
is "linf" and ``radius(x)`` is eps per sample, in the ball's own (std) units; ``per_dim()`` is
the radius of each dimension in raw units, which attacks step with.

This module imports only ``threats.base`` (see DESIGN.md).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from robustlab.threats.base import within


@dataclass(frozen=True)
class StateBall:
    """Linf ball of radius ``eps`` in units of each dimension's state std.

    Args:
        eps: radius in standard deviations (0.1 = a tenth of a std in every dimension).
        scale: (D,) per-dimension std in raw observation units, all > 0; None until ``bind``.
    """

    eps: float
    scale: tuple[float, ...] | None = None
    norm = "linf"

    def __post_init__(self) -> None:
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)):
            raise TypeError(f"eps: expected a number, got {type(self.eps).__name__}")
        if not math.isfinite(self.eps) or self.eps < 0:
            raise ValueError(f"eps: expected a finite number >= 0, got {self.eps}")
        object.__setattr__(self, "eps", float(self.eps))
        if self.scale is not None:
            s = tuple(float(v) for v in (self.scale.tolist() if isinstance(self.scale, Tensor) else self.scale))
            if not s or not all(math.isfinite(v) and v > 0 for v in s):
                raise ValueError(f"scale: expected positive finite per-dimension stds, got {s}")
            object.__setattr__(self, "scale", s)

    @classmethod
    def parse(cls, spec: str) -> "StateBall":
        """Parse "state:0.1" (an unbound ball; ``bind`` gives it the policy's state std)."""
        if not isinstance(spec, str):
            raise TypeError(f"threat: expected a string such as 'state:0.1', got {type(spec).__name__}")
        prefix, _, value = spec.partition(":")
        try:
            if prefix.strip().lower() != "state":
                raise ValueError
            eps = float(value)
        except ValueError:
            raise ValueError(f"threat: expected state:EPS such as 'state:0.1', got {spec!r}") from None
        return cls(eps)

    def spec(self) -> str:
        """"state:0.1" (the scale is the policy's, part of its weights and stored with each run)."""
        return f"state:{self.eps:g}"

    def __str__(self) -> str:
        return self.spec()

    def bind(self, scale: Tensor | Sequence[float]) -> "StateBall":
        """The same ball measured in ``scale`` (D,) raw units per std."""
        return StateBall(self.eps, tuple(float(v) for v in (scale.tolist() if isinstance(scale, Tensor) else scale)))

    def with_eps(self, eps: float) -> "StateBall":
        return StateBall(eps, self.scale)

    def _scale(self, x: Tensor) -> Tensor:
        if self.scale is None:
            raise ValueError("threat: this state ball has no scale yet; bind it to the policy's state std "
                             "(StateBall(eps).bind(policy.state_std))")
        if x.shape[-1] != len(self.scale):
            raise ValueError(f"x: expected observations with {len(self.scale)} dimensions, got shape {tuple(x.shape)}")
        return torch.tensor(self.scale, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)

    # -- the threat protocol ---------------------------------------------------------------
    def validate(self, x: object, name: str = "x") -> None:
        """Raise unless x is a finite float tensor (N, D) with D the scale's length."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")
        if x.dim() != 2:
            raise ValueError(f"{name}: expected observations (N, D), got shape {tuple(x.shape)}")
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}: contains NaN or Inf")
        if self.scale is not None and x.shape[1] != len(self.scale):
            raise ValueError(f"{name}: expected {len(self.scale)} dimensions, got {x.shape[1]}")

    def radius(self, x: Tensor) -> Tensor:
        """(N,) the budget of each observation: eps, in std units."""
        return torch.full((x.shape[0],), self.eps, dtype=torch.float32, device=x.device)

    def per_dim(self, x: Tensor) -> Tensor:
        """(D,) the radius of each dimension in raw units: eps * std."""
        return self.eps * self._scale(x)

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """(N,) max over dimensions of |x_adv - x| / std (float32; float64 for float64 input)."""
        dt = torch.float64 if x.dtype == torch.float64 else torch.float32
        d = (x_adv.to(dt) - x.to(dt)).abs() / self._scale(x).to(dt)
        return d.amax(dim=1) if d.shape[1] else d.new_zeros(d.shape[0])

    def admits(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """(N,) bool: same shape, finite and within eps (up to float rounding)."""
        if x_adv.shape != x.shape:
            return torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        return torch.isfinite(x_adv).all(dim=1) & within(self.distance(x_adv, x), self.eps)

    def project(self, x_adv: Tensor, x: Tensor, eps: Tensor | float | None = None) -> Tensor:
        """Clip x_adv - x to [-eps * std, eps * std] per dimension (``eps`` (N,) or float overrides)."""
        e = self.eps if eps is None else eps
        s = self._scale(x)
        r = (e.to(x.dtype).reshape(-1, 1) * s) if isinstance(e, Tensor) else e * s
        return x + torch.maximum(torch.minimum(x_adv - x, r), -r)

    def random_start(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A uniform random point of the ball around x, shape (N, D)."""
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + (2 * u - 1) * self.per_dim(x)

    def steepest_direction(self, grad: Tensor, x_adv: Tensor | None = None) -> Tensor:
        """Linf ascent direction in raw units: sign(grad) * std (a step of ``alpha`` times this
        moves alpha std in every dimension)."""
        return grad.sign() * self._scale(grad)
