"""Model access levels. A white-box model is an nn.Module mapping [0, 1] inputs to logits.

Black-box access levels wrap what a team can actually hand over; every wrapper counts the
inputs its target really received (``queries``) and can refuse to go past a query budget
(``max_queries``; a refused call sends nothing and raises ``QueryBudgetExceeded``):

    ScoreOnly(fn)                    fn: (N, ...) in [0, 1] -> (N, K) scores, no autograd
    LabelOnly(fn)                    fn: (N, ...) in [0, 1] -> (N,) labels
    HTTPModel(url, access=...)       a JSON endpoint (see ``robustlab.models.serve``)
    SklearnModel(estimator, ...)     a fitted scikit-learn classifier on flattened inputs

Score access is a call, ``model(x) -> (N, K)``; label access is ``model.predict_labels(x) ->
(N,)`` (calling a label-only model raises a TypeError that says so; score-access wrappers have
no ``predict_labels``, so evaluation arg-maxes their scores). ``model.access`` is
"score" or "label". ``predict`` and ``n_classes_of`` are what evaluation uses, whatever the
access level.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robustlab.validation import check_inputs, probe_model

ACCESS_LEVELS = ("score", "label")


def __getattr__(name: str) -> Any:  # HTTPModel and HTTPError moved to models.http
    if name in ("HTTPModel", "HTTPError"):
        from robustlab.models import http

        return getattr(http, name)
    raise AttributeError(name)


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


def n_classes_of(model: object, x1: Tensor) -> int | None:
    """The number of classes, from a ``n_classes`` attribute or a probe on one input.

    None for a label-only model that was not told its number of classes (labels cannot
    reveal it); callers then skip the label range check.
    """
    k = getattr(model, "n_classes", None)
    if isinstance(k, int):
        return k
    if getattr(model, "access", None) == "label":
        return None
    return probe_model(model, x1)


# -- shared plumbing ------------------------------------------------------------------------
def _check_access(access: object) -> str:
    if access not in ACCESS_LEVELS:
        raise ValueError(f"access: expected 'score' or 'label', got {access!r}")
    return str(access)


def _check_budget(max_queries: object) -> int | None:
    if max_queries is None:
        return None
    if isinstance(max_queries, bool) or not isinstance(max_queries, int) or max_queries < 0:
        raise ValueError(f"max_queries: expected an int >= 0 or None, got {max_queries!r}")
    return max_queries


def _check_n_classes(n_classes: object) -> int | None:
    if n_classes is None:
        return None
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes: expected an int >= 2 or None, got {n_classes!r}")
    return n_classes


def _as_tensor(out: object, what: str) -> Tensor:
    if isinstance(out, Tensor):
        return out.detach()
    try:
        return torch.as_tensor(np.asarray(out))
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{what}: expected a tensor or array, got {type(out).__name__}") from e


def _check_scores(out: Tensor, n: int, what: str, n_classes: int | None) -> Tensor:
    if out.dim() != 2 or out.shape[0] != n:
        raise ValueError(f"{what}: expected scores of shape ({n}, n_classes) for a batch of {n}, got {tuple(out.shape)}")
    if out.shape[1] < 2:
        raise ValueError(f"{what}: expected at least 2 classes, got {out.shape[1]}")
    if n_classes is not None and out.shape[1] != n_classes:
        raise ValueError(f"{what}: expected {n_classes} classes, got {out.shape[1]}")
    if not out.is_floating_point():
        out = out.float()
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{what}: returned NaN or Inf scores")
    return out


def _check_labels(out: Tensor, n: int, what: str, n_classes: int | None) -> Tensor:
    if out.shape != (n,):
        raise ValueError(f"{what}: expected labels of shape ({n},) for a batch of {n}, got {tuple(out.shape)}")
    if out.is_floating_point():
        if not bool(torch.isfinite(out).all()) or not bool((out == out.round()).all()):
            raise ValueError(f"{what}: expected integer class labels, got non-integer values")
    elif out.dtype == torch.bool:
        raise ValueError(f"{what}: expected integer class labels, got booleans")
    out = out.to(torch.int64)
    if bool((out < 0).any()) or (n_classes is not None and bool((out >= n_classes).any())):
        raise ValueError(f"{what}: returned a label outside [0, {n_classes or 'n_classes'})")
    return out


class _Access:
    """Query counting and the budget. ``queries``: inputs the target received so far."""

    access: str = "score"

    def __init__(self, n_classes: int | None, max_queries: int | None) -> None:
        self.n_classes = _check_n_classes(n_classes)
        self.max_queries = _check_budget(max_queries)
        self.queries = 0
        if self.access == "label":
            # Only label-only access has predict_labels: its presence is how evaluation and
            # the attacks tell label-only from score access.
            self.predict_labels = self._predict_labels

    def fingerprint(self) -> str:
        """What identifies the target in a stored run (the wrapped object's type and id)."""
        inner = getattr(self, "fn", None) or getattr(self, "estimator", None)
        return f"{type(self).__name__}:{self.access}:{type(inner).__module__}.{type(inner).__qualname__}"

    @property
    def remaining(self) -> int | None:
        """Queries left in the budget (None: unlimited)."""
        return None if self.max_queries is None else self.max_queries - self.queries

    def reset_queries(self) -> None:
        self.queries = 0

    def _spend(self, n: int) -> None:
        """Reserve ``n`` queries, or raise before anything is sent."""
        if self.max_queries is not None and self.queries + n > self.max_queries:
            raise QueryBudgetExceeded(
                f"max_queries: a batch of {n} would exceed the budget of {self.max_queries} "
                f"({self.queries} already used)"
            )
        self.queries += n

    def _check_x(self, x: object) -> Tensor:
        check_inputs(x)
        return x  # type: ignore[return-value]

    def __call__(self, x: Tensor) -> Tensor:
        if self.access == "label":
            raise TypeError(
                f"{type(self).__name__}: label-only access gives labels, not scores; use "
                "predict_labels(x), or a decision-based attack (HopSkipJump, Boundary)"
            )
        x = self._check_x(x)
        self._spend(x.shape[0])
        out = self._scores(x)
        if self.n_classes is None:
            self.n_classes = int(out.shape[1])
        return out.to(x.device)

    def _predict_labels(self, x: Tensor) -> Tensor:
        x = self._check_x(x)
        self._spend(x.shape[0])
        return self._labels(x).to(x.device)

    def _scores(self, x: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def _labels(self, x: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError


# -- callables ------------------------------------------------------------------------------
class _FnAccess(_Access):
    """Access through a user's plain callable ``fn`` (scores or labels, per subclass)."""

    def __init__(self, fn: Callable[[Tensor], Any], n_classes: int | None = None,
                 max_queries: int | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
        super().__init__(n_classes, max_queries)
        self.fn = fn


class ScoreOnly(_FnAccess):
    """Score-only access: a callable mapping a batch in [0, 1] to (N, K) class scores.

    The callable is run without autograd; its output is checked (shape, finite) and returned as
    a float tensor. Logits, log-probabilities and probabilities are all accepted.

    Args:
        fn: the scoring function, (N, ...) -> (N, K) tensor or array.
        n_classes: K, if known (otherwise read from the first answer).
        max_queries: total inputs the target may receive (None: unlimited).
    """

    access = "score"

    def _scores(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            out = _as_tensor(self.fn(x), "fn")
        return _check_scores(out, x.shape[0], "fn", self.n_classes)


class LabelOnly(_FnAccess):
    """Label-only access: a callable mapping a batch in [0, 1] to (N,) predicted labels.

    Use ``predict_labels(x)``; calling the object raises a TypeError (there are no scores).

    Args:
        fn: the labelling function, (N, ...) -> (N,) integer tensor or array.
        n_classes: K, if known (needed for targeted attacks and the label range check).
        max_queries: total inputs the target may receive (None: unlimited).
    """

    access = "label"

    def _labels(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            out = _as_tensor(self.fn(x), "fn")
        return _check_labels(out, x.shape[0], "fn", self.n_classes)


def as_access(model: Callable[[Tensor], Tensor], access: str, n_classes: int | None = None,
              max_queries: int | None = None) -> ScoreOnly | LabelOnly:
    """Restrict a white-box model to score-only or label-only access (e.g. to check that a
    black-box evaluation reaches the white-box number)."""
    access = _check_access(access)
    if access == "score":
        return ScoreOnly(model, n_classes=n_classes, max_queries=max_queries)

    def labels(x: Tensor) -> Tensor:
        with torch.no_grad():
            return model(x).argmax(dim=1)

    return LabelOnly(labels, n_classes=n_classes, max_queries=max_queries)


# -- scikit-learn ---------------------------------------------------------------------------
class SklearnModel(_Access):
    """A fitted scikit-learn classifier on flattened inputs.

    Score access returns log ``predict_proba`` (logit-like scores whose arg-max is the most
    probable class); label access returns ``predict``. The estimator's ``classes_`` must be
    0 .. K-1 (the labels robustlab's data uses).

    Args:
        estimator: a fitted classifier with ``predict`` (and ``predict_proba`` for scores).
        input_shape: the shape of one input, (C, H, W); (1, 8, 8) for the digits data.
        access: "score", "label", or None (scores when the estimator has predict_proba).
        max_queries: total inputs the estimator may receive (None: unlimited).
    """

    def __init__(self, estimator: Any, input_shape: tuple[int, ...] = (1, 8, 8), access: str | None = None,
                 max_queries: int | None = None) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise TypeError(f"estimator: expected a fitted scikit-learn classifier with predict(), "
                            f"got {type(estimator).__name__}")
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise ValueError("estimator: not fitted (it has no classes_); call fit() first")
        classes = np.asarray(classes)
        if classes.ndim != 1 or not np.issubdtype(classes.dtype, np.integer) or \
                not np.array_equal(classes, np.arange(len(classes))):
            raise ValueError(f"estimator: classes_ must be 0 .. K-1, got {classes.tolist()[:12]}")
        shape = tuple(input_shape)
        if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ValueError(f"input_shape: expected a tuple of positive ints such as (1, 8, 8), got {input_shape!r}")
        n_features = getattr(estimator, "n_features_in_", None)
        if n_features is not None and int(np.prod(shape)) != int(n_features):
            raise ValueError(f"input_shape: {shape} has {int(np.prod(shape))} values but the estimator "
                             f"was fitted on {int(n_features)} features")
        has_proba = callable(getattr(estimator, "predict_proba", None))
        if access is None:
            access = "score" if has_proba else "label"
        self.access = _check_access(access)
        if self.access == "score" and not has_proba:
            raise ValueError("access: 'score' needs an estimator with predict_proba")
        super().__init__(len(classes), max_queries)
        self.estimator = estimator
        self.input_shape = shape

    def _check_x(self, x: object) -> Tensor:
        check_inputs(x)
        if tuple(x.shape[1:]) != self.input_shape:  # type: ignore[union-attr]
            raise ValueError(f"x: expected inputs of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")  # type: ignore[union-attr]
        return x  # type: ignore[return-value]

    def _flat(self, x: Tensor) -> np.ndarray:
        return x.detach().cpu().reshape(x.shape[0], -1).numpy().astype(np.float64)

    def _scores(self, x: Tensor) -> Tensor:
        p = np.asarray(self.estimator.predict_proba(self._flat(x)), dtype=np.float64)
        out = torch.from_numpy(np.log(np.clip(p, 1e-30, None))).to(x.dtype)
        return _check_scores(out, x.shape[0], "estimator", self.n_classes)

    def _labels(self, x: Tensor) -> Tensor:
        out = torch.from_numpy(np.asarray(self.estimator.predict(self._flat(x))))
        return _check_labels(out, x.shape[0], "estimator", self.n_classes)


__all__ = ["predict", "n_classes_of", "QueryBudgetExceeded", "ScoreOnly", "LabelOnly", "SklearnModel", "as_access",
           "ACCESS_LEVELS"]
