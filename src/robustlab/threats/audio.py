"""Budgets on audio relative to each clip's own loudness: a peak budget in dB (``DbBall``) and an
energy budget as a signal-to-noise ratio (``SnrBall``).

Audio inputs follow the core's box: x in [0, 1] of shape (N, 1, T) holds the waveform
w = 2x - 1 in [-1, 1]. A waveform change d is a change d / 2 in x, so every budget below is
stated on the waveform and converted to x units in ``radius``.

``DbBall(-30)`` is Carlini & Wagner (2018)'s dB_x measure: dB_x(delta) = dB(delta) - dB(x) with
dB(v) = 20 log10 max_i |v_i|, i.e. the perturbation's peak is at least 30 dB below the clip's
peak. It is an Linf ball (``norm = "linf"``) whose radius differs per clip:
radius(x) = 10^(db / 20) * max|w| / 2 in x units, so the Lp attacks walk it unchanged.

``SnrBall(30)``: the perturbation's energy is at least 30 dB below the clip's,
||d||_2 <= 10^(-snr / 20) ||w||_2, an L2 ball (``norm = "l2"``) with per-clip radius.

This module imports only ``threats.base`` and ``threats.lp`` (see DESIGN.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from robustlab.threats.base import within
from robustlab.threats.lp import LpBall


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return float(value)


def _parse(spec: object, prefix: str, example: str) -> float:
    if not isinstance(spec, str):
        raise TypeError(f"threat: expected a string such as {example!r}, got {type(spec).__name__}")
    head, _, value = spec.partition(":")
    if head.strip().lower() != prefix or not value.strip():
        raise ValueError(f"threat: expected {prefix.upper()}:VALUE such as {example!r}, got {spec!r}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"threat: expected {prefix.upper()}:VALUE such as {example!r}, got {spec!r}") from None


def _ratio_db(num: Tensor, den: Tensor) -> Tensor:
    """20 log10(num / den) per sample: -inf where num is 0, +inf where only den is 0."""
    with torch.no_grad():
        return 20.0 * (torch.log10(num) - torch.log10(den))


@dataclass(frozen=True)
class _AudioBall:
    """Shared geometry: an Lp ball (``norm``) with a per-clip radius in x units."""

    def _lp(self) -> LpBall:
        return LpBall(self.norm, 1.0)  # type: ignore[attr-defined]

    def __str__(self) -> str:
        return self.spec()  # type: ignore[attr-defined]

    def validate(self, x: object, name: str = "x") -> None:
        """Raise unless x is a float tensor (N, 1, T) in [0, 1] (a waveform mapped as (w + 1) / 2)."""
        self._lp().validate(x, name)
        assert isinstance(x, Tensor)
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"{name}: expected audio of shape (N, 1, T), got {tuple(x.shape)}")

    def project(self, x_adv: Tensor, x: Tensor, eps: Tensor | float | None = None) -> Tensor:
        """Project into each clip's ball (radius(x), or ``eps``) and then into the [0, 1] box."""
        return self._lp().project(x_adv, x, self.radius(x) if eps is None else eps)  # type: ignore[attr-defined]

    def random_start(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A uniformly random point of each clip's ball (inside the box)."""
        r = self.radius(x).to(x.dtype)  # type: ignore[attr-defined]
        n = x.shape[0]
        if self.norm == "linf":  # type: ignore[attr-defined]
            u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            delta = (2 * u - 1) * r.reshape(n, 1, 1)
        else:
            g = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            g = g / _flat(g).norm(dim=1).clamp_min(1e-12).reshape(n, 1, 1)
            s = torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)
            delta = g * (s * r).reshape(n, 1, 1)
        return self.project(x + delta, x)

    def steepest_direction(self, grad: Tensor, x_adv: Tensor | None = None, sparsity: float = 0.99) -> Tensor:
        return self._lp().steepest_direction(grad, x_adv, sparsity)

    def scaled(self, factor: float) -> "_AudioBall":
        """The same kind of ball with every clip's radius multiplied by ``factor`` in (0, 1]
        (an eps ramp): the budget moves by 20 log10(factor) dB."""
        if not isinstance(factor, (int, float)) or not 0.0 < factor <= 1.0:
            raise ValueError(f"factor: expected a number in (0, 1], got {factor!r}")
        if factor == 1.0:
            return self
        return self._shifted(20.0 * math.log10(factor))  # type: ignore[attr-defined]

    def admits(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """(N,) bool: in the [0, 1] box and within each clip's radius (up to float rounding)."""
        if x_adv.shape != x.shape:
            return torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        a = _flat(x_adv)
        box = (a >= 0).all(dim=1) & (a <= 1).all(dim=1) & torch.isfinite(a).all(dim=1)
        # The same float-rounding allowance as an LpBall's (DIST_TOL, in x units).
        return box & within(self._lp().distance(x_adv, x), self.radius(x))  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DbBall(_AudioBall):
    """Linf budget relative to each clip's peak, in dB (Carlini & Wagner 2018's dB_x).

    Args:
        db: the perturbation's peak relative to the clip's peak, in dB (< 0: quieter than the
            clip; -30 means at most 10^(-30/20) = 3.2% of the clip's peak amplitude).
    """

    db: float
    norm: str = "linf"

    def __post_init__(self) -> None:
        object.__setattr__(self, "db", _number(self.db, "db"))
        if self.norm != "linf":
            raise ValueError(f"norm: a DbBall is an Linf ball, got {self.norm!r}")

    @classmethod
    def parse(cls, spec: str) -> DbBall:
        """Parse "db:-30"."""
        return cls(_parse(spec, "db", "db:-30"))

    def spec(self) -> str:
        """The stored and shown form, e.g. "db:-30"."""
        return f"db:{self.db:g}"

    def _shifted(self, delta_db: float) -> DbBall:
        return DbBall(self.db + delta_db)

    def radius(self, x: Tensor) -> Tensor:
        """(N,) float32 Linf radius in x units: 10^(db/20) * max|w| / 2, with w = 2x - 1."""
        peak = (2.0 * _flat(x).to(torch.float32) - 1.0).abs().amax(dim=1)
        return (10.0 ** (self.db / 20.0)) * peak / 2.0

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """(N,) dB_x of the perturbation: 20 log10(max|w_adv - w| / max|w|) (-inf when unchanged)."""
        dt = torch.float64 if x.dtype == torch.float64 else torch.float32
        d = _flat(x_adv.to(dt) - x.to(dt)).abs().amax(dim=1)
        peak = (_flat(x.to(dt)) - 0.5).abs().amax(dim=1)
        return _ratio_db(d, peak).to(torch.float32)


@dataclass(frozen=True)
class SnrBall(_AudioBall):
    """L2 budget relative to each clip's energy: a signal-to-noise ratio of at least ``snr`` dB.

    Args:
        snr: 20 log10(||w||_2 / ||d||_2) must be >= snr (30: the perturbation has 1/1000 of
            the clip's energy).

    ``distance`` returns the perturbation-to-signal ratio in dB, i.e. -SNR, so that, as for
    every threat, a larger distance is a larger perturbation (admitted when <= -snr).
    """

    snr: float
    norm: str = "l2"

    def __post_init__(self) -> None:
        object.__setattr__(self, "snr", _number(self.snr, "snr"))
        if self.norm != "l2":
            raise ValueError(f"norm: an SnrBall is an L2 ball, got {self.norm!r}")

    @classmethod
    def parse(cls, spec: str) -> SnrBall:
        """Parse "snr:30"."""
        return cls(_parse(spec, "snr", "snr:30"))

    def spec(self) -> str:
        return f"snr:{self.snr:g}"

    def _shifted(self, delta_db: float) -> SnrBall:
        return SnrBall(self.snr - delta_db)

    def radius(self, x: Tensor) -> Tensor:
        """(N,) float32 L2 radius in x units: 10^(-snr/20) * ||w||_2 / 2, with w = 2x - 1."""
        energy = (2.0 * _flat(x).to(torch.float32) - 1.0).norm(dim=1)
        return (10.0 ** (-self.snr / 20.0)) * energy / 2.0

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """(N,) -SNR in dB: 20 log10(||w_adv - w||_2 / ||w||_2) (-inf when unchanged)."""
        dt = torch.float64 if x.dtype == torch.float64 else torch.float32
        d = _flat(x_adv.to(dt) - x.to(dt)).norm(dim=1)
        sig = (_flat(x.to(dt)) - 0.5).norm(dim=1)
        return _ratio_db(d, sig).to(torch.float32)


__all__ = ["DbBall", "SnrBall"]
