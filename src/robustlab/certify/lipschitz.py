"""The margin certificate of a network with a known Lipschitz constant (one forward pass).

If ``model`` is L-Lipschitz from L2 to L2 (it states L as ``model.lipschitz``), every logit
difference z_y - z_j is sqrt(2) L-Lipschitz, so the prediction cannot change within L2 radius
margin / (sqrt(2) L), margin = top logit minus the runner-up (Tsuzuku et al. 2018):

    result = Lipschitz()(model, x, y, LpBall("l2", 1.58))    # CertResult

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


class Lipschitz:
    """Certifier for models with a proven L2 Lipschitz constant.

    ``certified[i]``: the prediction is y[i] and margin / (sqrt(2) L) exceeds the threat's L2
    radius (Linf / L1 converted as above, with the threats' distance tolerance). ``radius``: the
    certified L2 radius where the prediction is right (0 elsewhere). ``bound``: a lower bound of
    the worst-case true-class margin over the ball, (z_y - max_{j != y} z_j) - sqrt(2) L eps_2.
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
        true = logits.gather(1, y[:, None]).squeeze(1)
        other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
        pred = logits.argmax(dim=1)
        correct = pred == y
        radius = torch.where(correct, (true - other) / (math.sqrt(2.0) * lip), torch.zeros_like(true))
        eps = ball.radius(x).double()
        dim = x[0].numel()
        eps2 = {"l2": eps, "linf": eps * math.sqrt(dim), "l1": eps}[ball.norm]
        bound = (true - other) - math.sqrt(2.0) * lip * eps2
        certified = correct & (radius > eps2 + DIST_TOL * eps2.clamp(min=1.0))
        return CertResult(certified=certified, radius=radius, prediction=pred, bound=bound,
                          forward_calls=x.shape[0], seconds=time.time() - t0, method=self.name)


__all__ = ["Lipschitz", "lipschitz_constant"]
