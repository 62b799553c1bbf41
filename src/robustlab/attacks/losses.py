"""The one success rule and the losses attackers ascend, for models that may reject.

A model may answer "reject" (a detector in front of a classifier, smoothing's abstain): it says
so with ``model.rejects = True`` and returns K + 1 scores whose last column is "reject". An
adversarial point that is rejected is a defended point, so the success rule and every loss here
treat the reject column like the true class (Carlini & Wagner 2017's combined objective).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rejects(model: object) -> bool:
    """True when ``model`` declares a reject output (its last score column)."""
    return bool(getattr(model, "rejects", False))


def predictions(logits: Tensor) -> Tensor:
    """(N,) argmax class (the reject column included, when the model has one)."""
    return logits.argmax(dim=1)


def is_success(logits: Tensor, y: Tensor, target: Tensor | None = None, reject: bool = False) -> Tensor:
    """(N,) bool: the attack succeeded at these logits.

    Untargeted: the prediction is neither ``y`` nor (for a rejecting model) "reject".
    Targeted: the prediction is ``target``.
    """
    pred = logits.argmax(dim=1)
    if target is not None:
        return pred == target
    ok = pred != y
    if reject:
        ok &= pred != logits.shape[1] - 1
    return ok


def _defended_logit(logits: Tensor, y: Tensor, reject: bool) -> Tensor:
    true = logits.gather(1, y[:, None]).squeeze(1)
    return torch.maximum(true, logits[:, -1]) if reject else true


def _others(logits: Tensor, y: Tensor, reject: bool) -> Tensor:
    masked = logits.scatter(1, y[:, None], float("-inf"))
    if reject:
        masked = masked.clone()
        masked[:, -1] = float("-inf")
    return masked


def margin_loss(logits: Tensor, y: Tensor, reject: bool = False) -> Tensor:
    """(N,) best wrong logit minus the defended one (the true class, or "reject" if higher);
    > 0 exactly where ``is_success`` holds (ties aside)."""
    return _others(logits, y, reject).amax(dim=1) - _defended_logit(logits, y, reject)


def ce_loss(logits: Tensor, y: Tensor, reject: bool = False) -> Tensor:
    """(N,) cross-entropy of the defended outcome: -log(p_y + p_reject) for a rejecting model,
    plain cross-entropy otherwise."""
    if not reject:
        return F.cross_entropy(logits, y, reduction="none")
    lse = torch.logsumexp(logits, dim=1)
    both = torch.stack([logits.gather(1, y[:, None]).squeeze(1), logits[:, -1]], dim=1)
    return lse - torch.logsumexp(both, dim=1)


def attack_loss(name: str, logits: Tensor, y: Tensor, target: Tensor | None, reject: bool = False) -> Tensor:
    """Per-sample loss the attacker ascends. ``name``: "ce" (cross-entropy) or "margin" (C&W)."""
    if name == "ce":
        if target is None:
            return ce_loss(logits, y, reject)
        return -F.cross_entropy(logits, target, reduction="none")
    if name == "margin":
        if target is None:
            return margin_loss(logits, y, reject)
        return -margin_loss(logits, target)
    raise ValueError(f"loss: expected 'ce' or 'margin', got {name!r}")


_DLR_TINY = 1e-12


def dlr_loss(logits: Tensor, y: Tensor, target: Tensor | None = None, reject: bool = False) -> Tensor:
    """The Difference of Logits Ratio, per sample, to be maximised (> 0 means misclassified).

    Untargeted: (max_{i != y} z_i - z_y) / (z_(1) - z_(3)); targeted: (z_t - z_y) /
    (z_(1) - (z_(3) + z_(4)) / 2), with z_(k) the k-th largest logit. Needs 3 (untargeted) or
    4 (targeted) classes. For a rejecting model (untargeted) the defended logit is
    max(z_y, z_reject), "other" runs over the K class columns without y, and the sorted logits
    of the scale are the K class columns': pushing a point into "reject" is no progress.
    """
    if reject and target is None:
        cls = logits[:, :-1]
        top = cls.topk(3, dim=1).values
        defended = torch.maximum(cls.gather(1, y[:, None]).squeeze(1), logits[:, -1])
        other = cls.scatter(1, y[:, None], float("-inf")).amax(dim=1)
        return (other - defended) / (top[:, 0] - top[:, 2] + _DLR_TINY)
    top = logits.topk(3 if target is None else 4, dim=1).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
        return (other - z_y) / (top[:, 0] - top[:, 2] + _DLR_TINY)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return (z_t - z_y) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_TINY)


def dlr_targeted_defended(logits: Tensor, y: Tensor, target: Tensor, reject: bool = False) -> Tensor:
    """(N,) targeted DLR against the defended outcome, to be maximised: (z_t - d) / (c_(1) -
    (c_(3) + c_(4)) / 2), with d = max(z_y, z_reject) for a rejecting model (z_y otherwise) and
    c_(k) the k-th largest of the K class logits. Unlike ``dlr_loss``'s targeted form it counts
    a rejected point as defended, so reaching the target class while the detector fires is no
    progress. Needs 4 classes; without ``reject`` it equals ``dlr_loss(logits, y, target)``."""
    cls = logits[:, :-1] if reject else logits
    top = cls.topk(4, dim=1).values
    defended = _defended_logit(logits, y, reject)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return (z_t - defended) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_TINY)


def apgd_loss(name: str, logits: Tensor, y: Tensor, target: Tensor | None, reject: bool = False) -> Tensor:
    """Per-sample loss APGD ascends: "ce" (targeted: minus the cross-entropy to the target;
    reject-aware, see ``losses.ce_loss``), "dlr" (targeted: the targeted DLR) or "dlr-defended"
    (targeted: ``dlr_targeted_defended``; untargeted: as "dlr")."""
    if name == "dlr-defended":
        if target is None:
            return dlr_loss(logits, y, None, reject)
        return dlr_targeted_defended(logits, y, target, reject)
    if name == "ce":
        if target is None:
            return ce_loss(logits, y, reject)
        return -F.cross_entropy(logits, target, reduction="none")
    return dlr_loss(logits, y, target, reject)


__all__ = ["rejects", "predictions", "is_success", "margin_loss", "ce_loss", "attack_loss", "dlr_loss", "dlr_targeted_defended",
           "apgd_loss"]
