"""Plumbing shared by the black-box attacks (score-based and decision-based).

A black-box attack never asks for gradients. It reaches the target through a ``Queries``
object that counts, per sample, every input the target really received, and that stops
cleanly when the target's own query budget (an HTTP endpoint's, say) runs out.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.attacks.base import is_success
from robustlab.models.access import QueryBudgetExceeded
from robustlab.threats import check_lp  # re-exported for the black-box attacks
from robustlab.validation import check_attack_args, check_logits


def check_blackbox_inputs(model: object, x: Tensor, y: Tensor, target: Tensor | None) -> None:
    """Validate an attack's arguments without querying the model (a probe would cost a query)."""
    check_attack_args(model, x, y, target)


def has_scores(model: object) -> bool:
    """False for label-only access (``LabelOnly``, ``HTTPModel(access="label")``, ...)."""
    return getattr(model, "access", "score") != "label"


def require_scores(model: object, attack: str) -> None:
    if not has_scores(model):
        raise TypeError(
            f"model: {attack} needs class scores, but this model gives labels only "
            "(label-only access); use a decision-based attack such as HopSkipJump or Boundary"
        )


class Queries:
    """Routes black-box queries to the model and counts them per sample.

    ``per_sample[i]`` is the number of inputs sent on behalf of sample ``i``; ``total`` their
    sum, which is what the target received. ``exhausted`` is set when the target refused a
    query because its own budget ran out; the attack then stops and returns what it has.
    """

    def __init__(self, model: object, n: int, device: torch.device) -> None:
        self.model = model
        self.per_sample = torch.zeros(n, dtype=torch.int64, device=device)
        self.total = 0
        k = getattr(model, "n_classes", None)  # a wrapper told its classes (LabelOnly(..., n_classes=10))
        self.n_classes: int | None = k if isinstance(k, int) and not isinstance(k, bool) else None
        self.exhausted = False

    def _record(self, idx: Tensor, m: int) -> None:
        self.per_sample.index_add_(0, idx, torch.ones(m, dtype=torch.int64, device=idx.device))
        self.total += m

    def scores(self, x: Tensor, idx: Tensor) -> Tensor:
        """(M, K) scores of the model on ``x`` (M, ...), sent on behalf of samples ``idx`` (M,)."""
        with torch.no_grad():
            out = self.model(x)
        if not isinstance(out, Tensor):
            out = torch.as_tensor(out)
        self._record(idx, x.shape[0])
        k = check_logits(out, x.shape[0])
        if self.n_classes is None:
            self.n_classes = k
        elif k != self.n_classes:
            raise ValueError(f"model: returned {k} classes, earlier {self.n_classes}")
        if not out.is_floating_point():
            out = out.float()
        return out.to(x.device)

    def labels(self, x: Tensor, idx: Tensor) -> Tensor:
        """(M,) int64 labels of the model on ``x``: ``predict_labels`` where the model has it
        (label-only access), else the arg-max of its scores."""
        fn = getattr(self.model, "predict_labels", None)
        if callable(fn):
            with torch.no_grad():
                out = fn(x)
            if not isinstance(out, Tensor):
                out = torch.as_tensor(out)
            if out.shape != (x.shape[0],):
                raise ValueError(
                    f"model: expected predict_labels to return shape ({x.shape[0]},), got {tuple(out.shape)}"
                )
            self._record(idx, x.shape[0])
            return out.to(device=x.device, dtype=torch.int64)
        return self.scores(x, idx).argmax(dim=1)


def budget_stop(attack: str, e: QueryBudgetExceeded, queries: Queries) -> None:
    queries.exhausted = True
    warnings.warn(f"{attack}: the target's query budget ran out ({e}); returning the best points so far",
                  stacklevel=3)


def check_labels(y: Tensor, target: Tensor | None, n_classes: int | None) -> None:
    """Labels and targets in range, once the number of classes is known (from the first query)."""
    if n_classes is None:
        return
    from robustlab.validation import check_labels_in_range

    check_labels_in_range(y, n_classes)
    if target is not None:
        check_labels_in_range(target, n_classes, "target")


def score_loss(name: str, scores: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """Per-sample loss the attack minimises; below 0 (margin) means success.

    margin, untargeted: score of y minus the best other score; targeted: best non-target score
    minus the target's score. ce: cross-entropy of the scores taken as logits (targeted: to the
    target; untargeted: its negative).
    """
    if name == "margin":
        lab = y if target is None else target
        own = scores.gather(1, lab[:, None]).squeeze(1)
        other = scores.scatter(1, lab[:, None], float("-inf")).amax(dim=1)
        return own - other if target is None else other - own
    if target is None:
        return -F.cross_entropy(scores, y, reduction="none")
    return F.cross_entropy(scores, target, reduction="none")


def first_query(q: Queries, x: Tensor, y: Tensor, target: Tensor | None, loss: str,
                attack: str) -> tuple[Tensor, Tensor] | None:
    """The opening query of a score-based attack: scores of the clean points (counted), labels
    checked against the number of classes, and per-sample (success, loss). None when the
    target's query budget ran out on it (warned; the caller returns the clean points)."""
    try:
        sc = q.scores(x, torch.arange(x.shape[0], device=x.device))
    except QueryBudgetExceeded as e:
        budget_stop(attack, e, q)
        return None
    check_labels(y, target, q.n_classes)
    return is_success(sc, y, target), score_loss(loss, sc, y, target)


def accept(idx: Tensor, cand: Tensor, scores: Tensor, y: Tensor, target: Tensor | None, loss: str,
           x_best: Tensor, loss_best: Tensor, success: Tensor) -> None:
    """Random-search acceptance, in place: the points ``idx`` take their candidates ``cand``
    where the loss at ``scores`` fell or the candidate succeeds."""
    ti = None if target is None else target[idx]
    lv = score_loss(loss, scores, y[idx], ti)
    succ = is_success(scores, y[idx], ti)
    better = succ | (lv < loss_best[idx])
    upd = idx[better]
    x_best[upd] = cand[better]
    loss_best[upd] = lv[better]
    success[upd] = succ[better]


__all__ = ["Queries", "QueryBudgetExceeded", "check_blackbox_inputs", "check_lp", "require_scores",
           "has_scores", "budget_stop", "check_labels", "score_loss", "first_query", "accept"]
