"""Certifiers built on bound propagation: ``IBP()``, ``CROWN()``, ``AlphaCROWN()``.

    result = CROWN()(model, x, y, LpBall("linf", 0.3))   # CertResult, per sample

A point is certified when the model predicts y there and the lower bound of every margin
logit_y - logit_j (j != y) over the threat set is > 0; ``bound`` is the smallest of those lower
bounds (a certified point has bound > 0). CROWN and alpha-CROWN keep the tighter of CROWN's and
IBP's bound on every intermediate neuron and on every margin (all sound; on IBP-trained networks
IBP is often the tighter one).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.certify.crown import MAX_ELEMENTS, bounds, margin_spec
from robustlab.results import CertResult
from robustlab.threats import check_lp


def _certify(method: str, name: str, model: nn.Module, x: Tensor, y: Tensor, threat: object, batch_size: int,
             with_ibp: bool, **kw: object) -> CertResult:
    t0 = time.time()
    ball = check_lp(threat)
    if not isinstance(y, Tensor) or y.shape != (x.shape[0],):
        raise ValueError(f"y: expected ({x.shape[0]},) labels, got {getattr(y, 'shape', type(y).__name__)}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    preds, lows = [], []
    try:
        with torch.no_grad():
            for s in range(0, x.shape[0], batch_size):
                xb, yb = x[s:s + batch_size], y[s:s + batch_size]
                logits = model(xb)
                spec = margin_spec(yb, logits.shape[1]).to(xb.dtype)
                low, _ = bounds(model, xb, ball, method, spec, upper=False, **kw)
                if with_ibp:
                    low = torch.maximum(low, bounds(model, xb, ball, "ibp", spec, upper=False)[0])
                preds.append(logits.argmax(1))
                lows.append(low.amin(1))
    finally:
        model.train(was_training)
    pred, bound = torch.cat(preds), torch.cat(lows)
    certified = (pred == y) & (bound > 0)
    radius = torch.where(certified, ball.radius(x).to(bound.dtype).reshape(-1), torch.zeros_like(bound))
    return CertResult(certified=certified, radius=radius, prediction=pred, bound=bound,
                      forward_calls=x.shape[0], seconds=time.time() - t0, method=name)


@dataclass(frozen=True)
class IBP:
    """Interval bound propagation certifier. Args: batch_size: points bounded at once."""

    batch_size: int = 256
    name: str = "ibp"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, threat: object) -> CertResult:
        return _certify("ibp", self.name, model, x, y, threat, self.batch_size, with_ibp=False)


@dataclass(frozen=True)
class CROWN:
    """CROWN certifier (CROWN intermediate bounds, the larger of CROWN's and IBP's margin bound).

    Args:
        batch_size: points bounded at once (memory grows with it).
        max_elements: cap on one back-substitution tensor (floats).
    """

    batch_size: int = 32
    max_elements: int = MAX_ELEMENTS
    name: str = "crown"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, threat: object) -> CertResult:
        return _certify("crown", self.name, model, x, y, threat, self.batch_size, with_ibp=True,
                        max_elements=self.max_elements, intersect_ibp=True)


@dataclass(frozen=True)
class AlphaCROWN:
    """alpha-CROWN certifier: CROWN with the lower slopes of every ReLU layer optimised per margin
    (and per intermediate neuron for the intermediate layers' bounds).

    Args:
        steps: projected-Adam steps on the slopes (0 is CROWN).
        lr: Adam learning rate of the slopes (slopes live in [0, 1]).
        batch_size: points bounded at once (default 8: every intermediate layer keeps per-neuron
            slopes, so memory grows faster with it than CROWN's).
        max_elements: as ``CROWN``.
    """

    steps: int = 20
    lr: float = 0.1
    batch_size: int = 8
    max_elements: int = MAX_ELEMENTS
    name: str = "alpha-crown"

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps: expected >= 0, got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr: expected > 0, got {self.lr}")

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, threat: object) -> CertResult:
        return _certify("alpha-crown", self.name, model, x, y, threat, self.batch_size, with_ibp=True,
                        max_elements=self.max_elements, alpha_steps=self.steps, alpha_lr=self.lr, intersect_ibp=True)

