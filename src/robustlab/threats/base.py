"""The threat protocol: what every threat (an Lp ball, a dB budget on audio, a word budget on
text, a state-scaled ball on observations) tells the harness.

    threat.spec()               -> "linf:0.3"    the string stored, shown and parsed back
    threat.validate(x)          -> None          raises ValueError naming ``x`` for bad input
    threat.distance(x_adv, x)   -> (N,) float    in the threat's own unit
    threat.admits(x_adv, x)     -> (N,) bool     the runner's check of every returned point

A ``Ball`` (a threat with a radius and a geometry that gradient attacks can walk) adds

    threat.radius(x)            -> (N,) float    per-sample budget (attacks never read a scalar eps)
    threat.project(x_adv, x)    -> x_adv inside the ball and the input box
    threat.random_start(x, generator)

``parse_threat("db:-30")`` turns a spec back into a threat through the prefix registry
(``register_threat``), so config files, the CLI and the report never split a spec by hand.

This module imports nothing of robustlab's own (see DESIGN.md).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

# Float rounding of (x + delta) - x can exceed eps by a few ulps; checks allow this much
# (relative to the radius, with this floor).
DIST_TOL = 1e-5


@runtime_checkable
class Threat(Protocol):
    """A set of allowed perturbations around each clean input."""

    def spec(self) -> str: ...

    def validate(self, x: Any) -> None: ...

    def distance(self, x_adv: Any, x: Any) -> Tensor: ...

    def admits(self, x_adv: Any, x: Any) -> Tensor: ...


@runtime_checkable
class Ball(Threat, Protocol):
    """A threat that is a norm ball around each input (intersected with the input box)."""

    def radius(self, x: Tensor) -> Tensor: ...

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor: ...

    def random_start(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor: ...


_PARSERS: dict[str, Callable[[str], Threat]] = {}


def register_threat(prefix: str, parse: Callable[[str], Threat]) -> None:
    """Make ``parse_threat`` understand specs that start with ``prefix:`` (e.g. "db")."""
    _PARSERS[prefix.lower()] = parse


def threat_prefixes() -> list[str]:
    return sorted(_PARSERS)


def parse_threat(spec: object, name: str = "threat") -> Threat:
    """The threat a spec string describes ("linf:0.3", "l2:1.5", "db:-30", "words:0.2,sim:0.8").

    Raises ValueError naming ``name`` for an unknown prefix or a malformed value.
    """
    if not isinstance(spec, str):
        raise TypeError(f"{name}: expected a spec string such as 'linf:0.3', got {type(spec).__name__}")
    prefix = spec.split(":", 1)[0].strip().lower()
    if ":" not in spec or prefix not in _PARSERS:
        raise ValueError(f"{name}: expected PREFIX:VALUE with PREFIX one of {threat_prefixes()} "
                         f"(e.g. 'linf:0.3'), got {spec!r}")
    try:
        return _PARSERS[prefix](spec)
    except (ValueError, TypeError, ZeroDivisionError) as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith(f"{name}:") else f"{name}: {msg}") from None


def spec_of(threat: object) -> str:
    """The stored string of a threat: ``threat.spec()``."""
    return threat.spec()  # type: ignore[attr-defined,no-any-return]


def check_threat(threat: object, name: str = "threat", ball: bool = False) -> Threat:
    """Return ``threat`` if it follows the protocol (and is a Ball when ``ball``), else raise a
    TypeError naming the argument and the missing methods."""
    need = ("spec", "validate", "distance", "admits") + (("radius", "project", "random_start") if ball else ())
    missing = [m for m in need if not callable(getattr(threat, m, None))]
    if missing:
        kind = "a Ball threat (e.g. LpBall)" if ball else "a threat (e.g. LpBall)"
        raise TypeError(f"{name}: expected {kind}, got {type(threat).__name__} without {', '.join(missing)}()")
    return threat  # type: ignore[return-value]


def within(dist: Tensor, radius: Tensor | float) -> Tensor:
    """(N,) bool: ``dist <= radius`` up to float rounding (DIST_TOL relative, DIST_TOL floor)."""
    r = torch.as_tensor(radius, dtype=torch.float32, device=dist.device)
    return dist.to(torch.float32) <= r + DIST_TOL * torch.clamp(r.abs(), min=1.0)
