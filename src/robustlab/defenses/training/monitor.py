"""The training monitor: failure modes of adversarial training read off the per-epoch figures.

Each epoch ``train`` measures, on a held-out slice, the clean accuracy, the accuracy under
FGSM (one step of length eps, no random start) and under PGD-10 (random start). Two patterns
mean the robustness the loss reports is not real:

- catastrophic overfitting (Wong et al. 2020): multi-step robust accuracy collapses (PGD
  accuracy falls to at most ``1 - collapse`` of the best epoch so far, that best being at least
  ``min_best``) while the single-step accuracy holds or rises (FGSM accuracy at least that of
  the best epoch, less ``tol``): the model has learnt to defeat the one attack it trains on,
  and its loss surface bends away from the FGSM direction.
- gradient masking: a one-step attack is far weaker than the multi-step one (FGSM accuracy
  exceeds PGD accuracy by ``gap`` or more: the gradient at the clean point no longer points
  where the loss rises), or the multi-step attack is weaker than the one-step one (PGD accuracy
  above FGSM accuracy by more than ``tol``: PGD's steps are being misled). Not checked on an
  epoch that ends inside the recipe's eps ramp (``EpochStats.eps_scale`` < 1): a model trained
  at a fraction of eps has a large FGSM-PGD gap at the full radius without masking anything.

Flags are plain dataclasses; ``train`` stores them with the epoch row, prints them, and, when
the monitor's ``stop`` names a flag, stops and rolls the weights back to the best epoch
(highest PGD accuracy) when ``rollback`` is set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class EpochStats:
    """The figures of one finished epoch (accuracies are fractions of the held-out slice).

    ``pgd_acc`` / ``fgsm_acc`` are None when no threat was given for the evaluation.
    ``eps_scale``: the recipe's eps multiplier at the epoch's last step (its ramp, in [0, 1]);
    below 1 the model has not yet trained at the radius the figures are measured at."""

    epoch: int
    loss: float
    clean_acc: float | None
    pgd_acc: float | None
    fgsm_acc: float | None
    seconds: float
    lr: float
    eps_scale: float = 1.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Flag:
    """A failure mode seen at ``epoch``: ``kind`` is "catastrophic_overfitting" or
    "gradient_masking"; ``message`` says which figures triggered it."""

    epoch: int
    kind: str
    message: str


@dataclass(frozen=True)
class Monitor:
    """Thresholds (fractions of accuracy) and the action on a flag.

    Args:
        collapse: fraction of the best epoch's PGD accuracy lost that counts as a collapse.
        min_best: the best PGD accuracy must have reached this for a fall to count.
        gap: FGSM accuracy minus PGD accuracy at or above this flags masking.
        tol: PGD accuracy may exceed FGSM accuracy by this much (noise on a small slice).
        stop: flag kinds that stop training.
        rollback: on a stop, restore the best epoch's weights.
    """

    collapse: float = 0.5
    min_best: float = 0.1
    gap: float = 0.3
    tol: float = 0.03
    stop: tuple[str, ...] = ()
    rollback: bool = True

    def __post_init__(self) -> None:
        for name in ("collapse", "min_best", "gap", "tol"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}: expected a fraction in [0, 1], got {v!r}")
        bad = set(self.stop) - {"catastrophic_overfitting", "gradient_masking"}
        if bad:
            raise ValueError(f"stop: unknown flag kinds {sorted(bad)}; expected "
                             "'catastrophic_overfitting' and/or 'gradient_masking'")

    def check(self, history: Sequence[EpochStats]) -> list[Flag]:
        """The flags raised by the last epoch of ``history`` (earlier epochs were checked before)."""
        if not history:
            return []
        cur = history[-1]
        if cur.pgd_acc is None or cur.fgsm_acc is None:
            return []
        flags = []
        prev = [h for h in history[:-1] if h.pgd_acc is not None and h.fgsm_acc is not None]
        if prev:
            best = max(prev, key=lambda h: h.pgd_acc)  # type: ignore[arg-type, return-value]
            assert best.pgd_acc is not None and best.fgsm_acc is not None
            if (best.pgd_acc >= self.min_best and cur.pgd_acc <= (1.0 - self.collapse) * best.pgd_acc
                    and cur.fgsm_acc >= best.fgsm_acc - self.tol):
                flags.append(Flag(cur.epoch, "catastrophic_overfitting",
                                  f"PGD accuracy fell to {cur.pgd_acc:.3f} from {best.pgd_acc:.3f} at epoch "
                                  f"{best.epoch} while FGSM accuracy went {best.fgsm_acc:.3f} -> {cur.fgsm_acc:.3f}"))
        if cur.eps_scale < 1.0:
            # still ramping: a model trained at a fraction of eps resists one step at the full
            # radius far better than PGD, which is expected, not masking of the trained radius
            return flags
        if cur.fgsm_acc - cur.pgd_acc >= self.gap:
            flags.append(Flag(cur.epoch, "gradient_masking",
                              f"FGSM accuracy {cur.fgsm_acc:.3f} exceeds PGD accuracy {cur.pgd_acc:.3f} "
                              f"by {cur.fgsm_acc - cur.pgd_acc:.3f} (>= {self.gap}): the one-step "
                              "gradient is misleading"))
        elif cur.pgd_acc - cur.fgsm_acc > self.tol:
            flags.append(Flag(cur.epoch, "gradient_masking",
                              f"PGD accuracy {cur.pgd_acc:.3f} exceeds FGSM accuracy {cur.fgsm_acc:.3f}: "
                              "the multi-step attack is weaker than one step"))
        return flags
