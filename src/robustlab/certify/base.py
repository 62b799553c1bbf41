"""The certifier contract, and the simplest sound certifier (an affine model's exact margin).

A certifier is a callable configured in its constructor, holding no state between calls:

    result = certifier(model, x, y, threat)     # -> CertResult, per sample

``certified[i]`` means: the model's prediction at x[i] is y[i] and provably stays y[i] on the
whole threat set around x[i]. ``evaluate`` runs certifiers before the attacks and fails loudly
if an attack later breaks a certified point (a certificate that is wrong is a bug, never a number).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from robustlab.results import CertResult
from robustlab.threats import LpBall, check_threat


@runtime_checkable
class Certifier(Protocol):
    """Anything called as ``certifier(model, x, y, threat) -> CertResult``."""

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, threat: object) -> CertResult: ...


def certifier_name(certifier: object) -> str:
    return str(getattr(certifier, "name", type(certifier).__name__))


def dual_norm(norm: str) -> float:
    """The exponent q of the dual of an Lp norm (linf -> 1, l2 -> 2, l1 -> inf)."""
    return {"linf": 1.0, "l2": 2.0, "l1": float("inf")}[norm]


def affine_layers(model: nn.Module) -> tuple[Tensor, Tensor]:
    """(W, b) of a model that is affine in its input: an ``nn.Linear``, or a Sequential of
    ``Flatten`` and exactly one ``Linear``. Raises ValueError naming ``model`` otherwise."""
    mods = list(model) if isinstance(model, nn.Sequential) else [model]
    lin = [m for m in mods if isinstance(m, nn.Linear)]
    other = [m for m in mods if not isinstance(m, (nn.Linear, nn.Flatten, nn.Identity))]
    if len(lin) != 1 or other:
        raise ValueError("model: LinearExact certifies affine models only (Flatten + one Linear); "
                         f"got {type(model).__name__}")
    w = lin[0].weight.detach()
    b = lin[0].bias.detach() if lin[0].bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    return w, b


@dataclass(frozen=True)
class LinearExact:
    """The exact worst-case margin of an affine classifier f(x) = W x + b over an Lp ball.

    For every other class j, min over ||d|| <= eps of (w_y - w_j).(x + d) + b_y - b_j is
    margin_j(x) - eps * ||w_y - w_j||_q with q the dual exponent. Ignoring the [0, 1] box only
    makes the bound lower, so the certificate is sound; it is exact for points far from the box.
    """

    @property
    def name(self) -> str:
        return "linear-exact"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, threat: object) -> CertResult:
        t0 = time.time()
        check_threat(threat)
        if not isinstance(threat, LpBall):
            raise TypeError(f"threat: LinearExact certifies Lp balls, got {type(threat).__name__}")
        w, b = affine_layers(model)
        xf = x.flatten(1).to(w.dtype)
        logits = xf @ w.T + b  # (N, K)
        wy = w[y]  # (N, D)
        diff = wy[:, None, :] - w[None, :, :]  # (N, K, D): w_y - w_j
        margins = logits.gather(1, y[:, None]) - logits  # (N, K)
        worst = margins - threat.radius(x).to(w.dtype)[:, None] * diff.norm(p=dual_norm(threat.norm), dim=2)
        worst = worst.scatter(1, y[:, None], float("inf"))
        bound = worst.amin(dim=1)
        pred = logits.argmax(dim=1)
        certified = (bound > 0) & (pred == y)
        radius = torch.where(certified, threat.radius(x).to(w.dtype), torch.zeros_like(bound))
        return CertResult(certified=certified, radius=radius, prediction=pred, bound=bound,
                          forward_calls=x.shape[0], seconds=time.time() - t0, method=self.name)
