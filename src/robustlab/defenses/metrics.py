"""The figures a detector is judged by.

- On non-adaptive adversarial examples (made against the bare classifier, then shown to the
  detector): the detection rate at the threshold's false-positive rate and the ROC AUC of clean
  versus successful adversarial scores (Xu et al. 2018 count successful examples only).
- Under the adaptive attack: the combined robust accuracy, where a point is defended if its
  clean version is accepted and classified correctly, and its adversarial version is classified
  correctly or rejected. A clean point rejected counts as an error in clean accuracy too.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class DetectionSummary:
    """Detection of one attack's (non-adaptive) examples.

    Attributes:
        attack: the attack's name.
        n_adversarial: successful adversarial examples scored (failures are left out).
        detection_rate: fraction of them whose score exceeds the threshold.
        false_positive_rate: fraction of the clean points whose score exceeds it.
        auc: ROC AUC of clean (negative) versus adversarial (positive) scores; nan if either set
            is empty.
        threshold: the score threshold used.
    """

    attack: str
    n_adversarial: int
    detection_rate: float
    false_positive_rate: float
    auc: float
    threshold: float


@dataclass
class CombinedAccuracy:
    """Accuracy of a classifier + detector.

    Attributes:
        clean_accuracy: clean points accepted and classified correctly.
        robust_accuracy: points whose clean version counts in ``clean_accuracy`` and whose
            adversarial version is classified correctly or rejected.
        clean_rejected: fraction of clean points rejected.
        adversarial_rejected: fraction of points whose adversarial version is rejected.
    """

    clean_accuracy: float
    robust_accuracy: float
    clean_rejected: float
    adversarial_rejected: float


def roc_auc(scores_clean: Tensor, scores_adv: Tensor) -> float:
    """ROC AUC of separating ``scores_adv`` (positives) from ``scores_clean`` (negatives), higher
    score meaning adversarial: the Mann-Whitney statistic, ties counted as one half."""
    neg = scores_clean.detach().double().flatten().cpu()
    pos = scores_adv.detach().double().flatten().cpu()
    if neg.numel() == 0 or pos.numel() == 0:
        return float("nan")
    allv = torch.cat([neg, pos])
    order = allv.argsort()
    ranks = torch.empty_like(allv)
    ranks[order] = torch.arange(1, allv.numel() + 1, dtype=allv.dtype)
    # Average the ranks of tied values.
    uniq, inverse = torch.unique(allv, return_inverse=True)
    sums = torch.zeros(uniq.numel(), dtype=allv.dtype).index_add_(0, inverse, ranks)
    counts = torch.zeros(uniq.numel(), dtype=allv.dtype).index_add_(0, inverse, torch.ones_like(ranks))
    ranks = (sums / counts)[inverse]
    r_pos = ranks[neg.numel():].sum()
    n_pos, n_neg = pos.numel(), neg.numel()
    return float((r_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def detection_summary(attack: str, scores_clean: Tensor, scores_adv: Tensor, success: Tensor,
                      threshold: float) -> DetectionSummary:
    """Detection of the successful examples among ``scores_adv`` ((N,), with ``success`` (N,)
    bool from the attack on the bare classifier) against the clean scores (M,)."""
    if scores_adv.shape != success.shape:
        raise ValueError(f"success: expected shape {tuple(scores_adv.shape)}, got {tuple(success.shape)}")
    adv = scores_adv[success.bool()]
    rate = float((adv > threshold).double().mean()) if adv.numel() else float("nan")
    fpr = float((scores_clean > threshold).double().mean())
    return DetectionSummary(attack, int(adv.numel()), rate, fpr, roc_auc(scores_clean, adv), float(threshold))


def combined_accuracy(logits_clean: Tensor, logits_adv: Tensor, y: Tensor) -> CombinedAccuracy:
    """From the deployed (N, K + 1) logits of a rejecting model (last column "reject") on the clean
    points and on their adversarial versions, and labels (N,)."""
    if logits_clean.shape != logits_adv.shape or logits_clean.dim() != 2:
        raise ValueError(f"logits_adv: expected shape {tuple(logits_clean.shape)}, got {tuple(logits_adv.shape)}")
    if y.shape != logits_clean.shape[:1]:
        raise ValueError(f"y: expected shape ({logits_clean.shape[0]},), got {tuple(y.shape)}")
    reject = logits_clean.shape[1] - 1
    pc, pa = logits_clean.argmax(1), logits_adv.argmax(1)
    clean_ok = pc == y
    robust = clean_ok & ((pa == y) | (pa == reject))
    f = lambda t: float(t.double().mean())  # noqa: E731
    return CombinedAccuracy(f(clean_ok), f(robust), f(pc == reject), f(pa == reject))


__all__ = ["DetectionSummary", "CombinedAccuracy", "roc_auc", "detection_summary", "combined_accuracy"]
