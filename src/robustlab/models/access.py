"""Model access levels. A white-box model is an nn.Module mapping [0, 1] inputs to logits.

Black-box access levels (score-only, label-only, HTTP, scikit-learn) wrap what a team can
actually hand over; every wrapper counts the queries its target really received.

``predict`` and ``n_classes_of`` are what evaluation uses, whatever the access level.
"""
from __future__ import annotations

import torch
from torch import Tensor

from robustlab.validation import probe_model


class QueryBudgetExceeded(RuntimeError):
    """A wrapper refused a query because its query budget would be exceeded; nothing was sent."""


def predict(model: object, x: Tensor) -> Tensor:
    """(N,) int64 predicted labels of ``model`` on (N, ...) inputs, without gradient.

    A model object with a ``predict_labels(x)`` method (label-only access) is asked for labels;
    anything else is called and its (N, K) scores are arg-maxed.
    """
    fn = getattr(model, "predict_labels", None)
    if callable(fn):
        return fn(x).to(torch.int64)
    with torch.no_grad():
        return model(x).argmax(dim=1)  # type: ignore[operator]


def n_classes_of(model: object, x1: Tensor) -> int:
    """The number of classes, from a ``n_classes`` attribute or a probe on one input."""
    k = getattr(model, "n_classes", None)
    if isinstance(k, int):
        return k
    return probe_model(model, x1)
