"""Robust accuracy as a curve over eps, from per-sample minimal adversarial distances.

A minimal-distance attack (``FAB``, ``CarliniWagner``, ``DeepFool`` with ``minimal=True``)
reports for each point the distance of the closest adversarial point it found (``inf`` where
it found none). A point is then robust at radius eps exactly when that distance is > eps, so
one run gives the whole curve:

    d = minimal_distances(model, x, y, FAB(LpBall("l2", 2.0), minimal=True))
    acc = robust_accuracy_curve(d, [0.5, 1.0, 1.5, 2.0])

The curve is an upper bound on the true robust accuracy (the attack may miss closer points);
combining several attacks with ``torch.minimum`` over their distances tightens it.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from robustlab.attacks.base import ModelGuard
from robustlab.models.access import predict
from robustlab.validation import check_inputs, check_positive_int


def minimal_distances(model, x: Tensor, y: Tensor, attack, *, batch_size: int = 500) -> Tensor:
    """(N,) smallest adversarial distance ``attack`` found per point, in its threat's norm.

    ``attack`` must run in minimal-distance mode (``minimal=True``). Points the model already
    misclassifies get 0 (they are never attacked); points no adversarial was found for get inf.
    """
    check_inputs(x, y)
    batch_size = check_positive_int(batch_size, "batch_size")
    if not getattr(attack, "minimal", False):
        raise ValueError("attack: expected an attack in minimal-distance mode (minimal=True)")
    y = y.to(torch.int64)
    out = torch.zeros(x.shape[0], dtype=x.dtype)
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        with ModelGuard(model, warn=False):
            correct = predict(model, xb) == yb
        idx = correct.nonzero().squeeze(1)
        d = torch.zeros(xb.shape[0], dtype=x.dtype)
        if idx.numel():
            res = attack(model, xb[idx], yb[idx])
            d[idx.cpu()] = res.distance.detach().cpu().to(x.dtype)
        out[start:start + xb.shape[0]] = d
    return out


def robust_accuracy_curve(distance: Tensor, eps: Sequence[float] | Tensor) -> Tensor:
    """(E,) robust accuracy at each radius in ``eps``: the fraction of points whose minimal
    adversarial distance is > eps. ``distance``: (N,) as from :func:`minimal_distances`
    (0 for misclassified points, inf for points never broken)."""
    if not isinstance(distance, Tensor) or distance.dim() != 1 or distance.numel() == 0:
        raise ValueError("distance: expected a non-empty 1-D tensor of per-sample distances")
    if bool(torch.isnan(distance).any()) or bool((distance < 0).any()):
        raise ValueError("distance: expected values >= 0 (inf for points never broken), got NaN or negative")
    e = torch.as_tensor(eps, dtype=torch.float64).reshape(-1)
    if e.numel() == 0 or bool(torch.isnan(e).any()) or bool((e < 0).any()):
        raise ValueError("eps: expected one or more radii >= 0")
    d = distance.detach().to(torch.float64).cpu()
    return (d[None, :] > e[:, None]).to(torch.float64).mean(dim=1)


def combine(*distances: Tensor) -> Tensor:
    """Per-sample minimum of several attacks' minimal distances (the worst case over attacks)."""
    if not distances:
        raise ValueError("distances: expected at least one tensor")
    out = distances[0]
    for d in distances[1:]:
        if d.shape != out.shape:
            raise ValueError(f"distances: shapes differ, {tuple(out.shape)} vs {tuple(d.shape)}")
        out = torch.minimum(out, d)
    return out


__all__ = ["minimal_distances", "robust_accuracy_curve", "combine"]
