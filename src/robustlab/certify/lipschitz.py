"""The margin certificate of a network with a known Lipschitz constant (one forward pass).

If ``model`` is L-Lipschitz from L2 to L2 (it states L as ``model.lipschitz``), every logit
difference z_y - z_j is sqrt(2) L-Lipschitz, so the prediction cannot change within L2 radius
margin / (sqrt(2) L), margin = top logit minus the runner-up (Tsuzuku et al. 2018):

    result = Lipschitz()(model, x, y, LpBall("l2", 1.58))    # CertResult

When the model also states per-pair constants (``model.pairwise_lipschitz()`` -> (K, K), K_ij
bounding the Lipschitz constant of z_i - z_j: ||w_i - w_j|| L_body for a last linear layer W
on an L_body-Lipschitz body; GloRo, Leino et al. 2021), the radius is the tighter

    min_{j != y} (z_y - z_j) / K_yj

which is never looser than margin / (sqrt(2) L) when K_yj <= sqrt(2) L.

Linf and L1 balls are certified through the L2 ball containing them (radius eps * sqrt(d) for
Linf over d input dimensions, eps for L1): sound, and loose by design.
"""
from __future__ import annotations

import math
import time

import torch
from torch import Tensor, nn

from robustlab.results import CertResult
from robustlab.threats import DIST_TOL, check_lp


def lipschitz_constant(model: object) -> float:
    """``model.lipschitz`` as a float; TypeError when the model states none, ValueError when
    it is not a positive finite number."""
    value = getattr(model, "lipschitz", None)
    if value is None:
        raise TypeError(f"model: {type(model).__name__} states no Lipschitz constant (model.lipschitz)")
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"model: lipschitz must be a positive finite number, got {value}")
    return value


def pairwise_constants(model: object) -> Tensor | None:
    """``model.pairwise_lipschitz()`` as a detached float64 (K, K) tensor, or None when the
    model has none; ValueError when it is not a square, finite, non-negative matrix."""
    fn = getattr(model, "pairwise_lipschitz", None)
    k = fn() if callable(fn) else None
    if k is None:
        return None
    k = torch.as_tensor(k).detach().double()
    if k.ndim != 2 or k.shape[0] != k.shape[1] or not bool(torch.isfinite(k).all()) or bool((k < 0).any()):
        raise ValueError(f"model: pairwise_lipschitz must be a finite non-negative (K, K) matrix, got shape {tuple(k.shape)}")
    return k


def _pair_rows(pairwise: Tensor | None, y: Tensor, lip: float, z: Tensor) -> Tensor:
    """(N, K) constants of z_y - z_j: the rows y of the pair constants, or sqrt(2) L for every
    pair when the model states none (the uniform bound is the pair bound with all K_ij equal)."""
    if pairwise is None:
        return torch.full_like(z, math.sqrt(2.0) * lip)
    return pairwise.to(z.dtype)[y]


def margin_radius(logits: Tensor, y: Tensor, lip: float, pairwise: Tensor | None = None) -> Tensor:
    """Certified L2 radius of the true class y for (N, K) logits: (z_y - max_{j != y} z_j) /
    (sqrt(2) L), or with (K, K) pair constants min_{j != y} (z_y - z_j) / K_yj (a pair with
    K_yj = 0 is constant: no bound when z_y > z_j, radius 0 otherwise). Float64 (N,); <= 0
    where y is not the strict top class."""
    z = logits.double()
    diff = z.gather(1, y[:, None]) - z  # (N, K): z_y - z_j
    k = _pair_rows(pairwise, y, lip, z)  # (N, K)
    ratio = torch.where(k > 0, diff / k.clamp_min(1e-300),
                        torch.where(diff > 0, torch.full_like(diff, float("inf")), torch.zeros_like(diff)))
    ratio = ratio.scatter(1, y[:, None], float("inf"))
    return ratio.amin(dim=1)


class Lipschitz:
    """Certifier for models with a proven L2 Lipschitz constant.

    ``certified[i]``: the prediction is y[i] and its certified radius (margin / (sqrt(2) L), or
    the per-pair radius above when the model states pair constants) exceeds the threat's L2
    radius (Linf / L1 converted as above, with the threats' distance tolerance). ``radius``: the
    certified L2 radius where the prediction is right (0 elsewhere). ``bound``: a lower bound of
    the worst-case true-class margin over the ball, (z_y - max_{j != y} z_j) - sqrt(2) L eps_2,
    or min_{j != y} (z_y - z_j - K_yj eps_2) with pair constants.
    One forward pass per point.
    """

    name = "lipschitz"

    def __init__(self, batch_size: int = 1000) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, threat: object) -> CertResult:
        t0 = time.time()
        ball = check_lp(threat)
        lip = lipschitz_constant(model)
        if y.shape != (x.shape[0],):
            raise ValueError(f"y: expected shape ({x.shape[0]},), got {tuple(y.shape)}")
        with torch.no_grad():
            logits = torch.cat([model(x[i:i + self.batch_size]) for i in range(0, x.shape[0], self.batch_size)])
        logits = logits.double()
        pairwise = pairwise_constants(model)
        pred = logits.argmax(dim=1)
        correct = pred == y
        margin_r = margin_radius(logits, y, lip, pairwise)
        radius = torch.where(correct, margin_r, torch.zeros_like(margin_r))
        eps = ball.radius(x).double()
        dim = x[0].numel()
        eps2 = {"l2": eps, "linf": eps * math.sqrt(dim), "l1": eps}[ball.norm]
        worst = (logits.gather(1, y[:, None]) - logits) - _pair_rows(pairwise, y, lip, logits) * eps2[:, None]
        bound = worst.scatter(1, y[:, None], float("inf")).amin(dim=1)
        certified = correct & (radius > eps2 + DIST_TOL * eps2.clamp(min=1.0))
        return CertResult(certified=certified, radius=radius, prediction=pred, bound=bound,
                          forward_calls=x.shape[0], seconds=time.time() - t0, method=self.name)


__all__ = ["Lipschitz", "lipschitz_constant", "margin_radius", "pairwise_constants"]
