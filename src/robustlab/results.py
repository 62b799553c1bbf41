"""Result dataclasses: plain data, no behaviour beyond trivial summaries.

This module imports nothing of robustlab's own (see DESIGN.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class AttackResult:
    """What one attack call produced.

    Attributes:
        x_adv: (N, ...) adversarial inputs in [0, 1], inside the threat's ball. Where the attack
            failed this is the attack's best attempt (or the clean input).
        success: (N,) bool, recomputed from the model on ``x_adv`` (misclassified, or the target
            reached for a targeted attack). A clean-misclassified point counts as a success.
        distance: (N,) Lp distance of ``x_adv`` to ``x`` in the threat's norm.
        forward_calls: model forward passes, counted per sample (a batch of 100 is 100).
        backward_calls: backward passes through the model, counted per sample.
        queries: (N,) model queries spent per sample, for black-box attacks; None otherwise.
    """

    x_adv: Tensor
    success: Tensor
    distance: Tensor
    forward_calls: int = 0
    backward_calls: int = 0
    queries: Tensor | None = None

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if self.success.numel() else 0.0


@dataclass
class AttackSummary:
    """One row of an evaluation table: the state after an attack ran on the still-robust points."""

    name: str
    robust_accuracy: float  # over all evaluated points, after this attack (cumulative worst case)
    broken: int  # points this attack broke that no earlier attack had
    attacked: int  # points this attack was run on
    forward_calls: int
    backward_calls: int
    seconds: float


@dataclass
class EvalReport:
    """The outcome of ``robustlab.evaluate``.

    Per-sample tensors are all of shape (N,), in the order of the evaluated points.
    ``broken_by`` holds the index into ``attacks`` of the first attack that broke the point,
    -1 for points still robust and -2 for points misclassified without attack. ``distance`` is
    the threat's distance of the stored adversarial point of each broken point (moved back
    towards the clean input to the closest point still misclassified, see
    ``attacks.sequence.shrink_along``), NaN for points not broken or misclassified clean.
    """

    n: int
    threat: str
    clean_accuracy: float
    robust_accuracy: float
    attacks: list[AttackSummary]
    clean_correct: Tensor
    robust: Tensor
    broken_by: Tensor
    distance: Tensor
    forward_calls: int
    backward_calls: int
    seconds: float
    run_id: str | None = None
    resumed_points: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    diagnostics: list[Any] = field(default_factory=list)
    certified: Tensor | None = None  # (N,) bool where certifiers ran, else None
    certificates: list["CertSummary"] = field(default_factory=list)

    @property
    def certified_accuracy(self) -> float | None:
        """Fraction of all points certified (correct and proven constant on the ball); None
        when no certifier ran."""
        if self.certified is None:
            return None
        return float(self.certified.float().mean()) if self.certified.numel() else 0.0


@dataclass
class CertSummary:
    """One certifier's row in an evaluation: how many points it certified and what it cost."""

    name: str
    certified_accuracy: float  # over all evaluated points, cumulative over certifiers so far
    certified: int  # points this certifier certified that no earlier one had
    attempted: int
    forward_calls: int
    seconds: float


@dataclass
class CertResult:
    """What one certifier call proved about a batch of points.

    Attributes:
        certified: (N,) bool: the prediction equals the label ``y`` and is proven constant on
            the whole threat set around the point (the ball intersected with the input box).
        radius: (N,) float: the certified radius in the threat's unit (smoothing, Lipschitz),
            or the threat's own radius where the certificate is for that one ball (bounds);
            0 where nothing is certified.
        prediction: (N,) int64: the certified model's prediction, -1 where it abstained.
        bound: (N,) float or None: a lower bound of the worst-case margin (true logit minus the
            best other) over the ball, where the method gives one (> 0 means certified).
        forward_calls: forward passes (or noise samples) spent, counted per sample.
        seconds: wall time of the call.
        method: the certifier's name ("linear-exact", "crown", "smoothing", ...).
    """

    certified: Tensor
    radius: Tensor
    prediction: Tensor
    bound: Tensor | None = None
    forward_calls: int = 0
    seconds: float = 0.0
    method: str = ""
