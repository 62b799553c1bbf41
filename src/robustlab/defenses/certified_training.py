"""Certified training recipes: IBP (Gowal et al. 2018) and CROWN-IBP (Zhang et al. 2020).

Each recipe is a frozen dataclass whose ``loss(model, x, y, generator, progress)`` the training
loop calls once per batch (``progress`` in [0, 1] is the fraction of training done). The loss is

    kappa * CE(model(x), y) + (1 - kappa) * CE(-m, y)

where m (N, K) holds lower bounds of the margins logit_y - logit_j over the Linf ball of radius
``eps`` (m_y = 0): IBP bounds for ``IBPTraining``; ``beta * CROWN-IBP + (1 - beta) * IBP`` for
``CROWNIBP``. Schedules (fractions of training, as in the papers' MNIST setups): eps is 0 until
``warmup``, then grows linearly to ``eps`` at ``ramp_end``; kappa goes linearly from
``kappa_start`` to ``kappa_end`` and beta from 1 to 0 over the same ramp. The papers' MNIST
defaults: IBP kappa 1 -> 0.5, CROWN-IBP kappa 1 -> 0 (beta 1 -> 0); ramp 10 -> 60 of 200 epochs.
Train at a larger eps than the one you certify (0.4 for a 0.3 test budget in both papers).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.certify.crown import bounds
from robustlab.defenses.training.recipes import unwrap
from robustlab.threats import LpBall


def _ramp(progress: float, start: float, end: float) -> float:
    """0 before ``start``, 1 after ``end``, linear in between."""
    if progress <= start:
        return 0.0
    if progress >= end or end <= start:
        return 1.0
    return (progress - start) / (end - start)


def _check(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name}: expected a value in [{lo}, {hi}], got {value}")


def _clean_forward(model: nn.Module, x: Tensor) -> tuple[Tensor, dict[nn.BatchNorm2d, tuple[Tensor, Tensor]]]:
    """model(x), and for every BatchNorm2d in training mode the (mean, biased variance) per
    channel of its input in this batch (differentiable; the clean pass's statistics)."""
    stats: dict[nn.BatchNorm2d, tuple[Tensor, Tensor]] = {}
    hooks = []
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and m.training:
            def hook(mod: nn.Module, inp: tuple[Tensor, ...]) -> None:
                z = inp[0]
                stats[mod] = (z.mean((0, 2, 3)), z.var((0, 2, 3), unbiased=False))  # type: ignore[index]
            hooks.append(m.register_forward_pre_hook(hook))
    try:
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    return logits, stats


@contextmanager
def _batch_stats(stats: dict[nn.BatchNorm2d, tuple[Tensor, Tensor]]) -> Iterator[None]:
    """Inside: each BatchNorm2d of ``stats`` is in eval mode normalising with the batch's clean
    statistics (as Shi et al. 2021 bound a training-mode BatchNorm); restored on exit."""
    saved = []
    for m, (mean, var) in stats.items():
        saved.append((m, m.running_mean, m.running_var, m.training))
        m.running_mean, m.running_var = mean, var  # type: ignore[assignment]
        m.eval()
    try:
        yield
    finally:
        for m, rm, rv, tr in saved:
            m.running_mean, m.running_var = rm, rv  # type: ignore[assignment]
            m.train(tr)


@dataclass(frozen=True)
class IBPTraining:
    """Interval bound propagation training (Gowal et al. 2018).

    Args:
        eps: Linf training radius in [0, 1] pixel units (reached at ``ramp_end``).
        warmup: fraction of training with eps = 0 (plain cross-entropy).
        ramp_end: fraction of training at which eps reaches ``eps``.
        kappa_start, kappa_end: weight of the clean loss at the start and the end of the ramp.
    """

    eps: float = 0.4
    warmup: float = 0.05
    ramp_end: float = 0.3
    kappa_start: float = 1.0
    kappa_end: float = 0.5

    def __post_init__(self) -> None:
        _check("eps", self.eps, 0.0, 1.0)
        _check("warmup", self.warmup, 0.0, 1.0)
        _check("ramp_end", self.ramp_end, self.warmup, 1.0)
        _check("kappa_start", self.kappa_start, 0.0, 1.0)
        _check("kappa_end", self.kappa_end, 0.0, 1.0)

    def schedule(self, progress: float) -> dict[str, float]:
        """eps, kappa and beta (CROWN-IBP weight; 0 for IBP) at ``progress`` in [0, 1]."""
        _check("progress", progress, 0.0, 1.0)
        t = _ramp(progress, self.warmup, self.ramp_end)
        return {"eps": self.eps * t, "kappa": self.kappa_start + (self.kappa_end - self.kappa_start) * t,
                "beta": 0.0}

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator | None,
             progress: float) -> Tensor:
        """Scalar training loss for x (N, C, H, W) in [0, 1], y (N,) at ``progress`` in [0, 1]."""
        s = self.schedule(progress)
        logits, stats = _clean_forward(model, x)
        clean = F.cross_entropy(logits, y)
        if s["eps"] <= 0 or s["kappa"] >= 1:
            return clean
        k = logits.shape[1]
        spec = torch.eye(k, device=x.device, dtype=x.dtype)[y].unsqueeze(1) - torch.eye(k, device=x.device,
                                                                                          dtype=x.dtype)
        ball = LpBall("linf", s["eps"])
        bare = unwrap(model)  # bounds walk the bare module (DDP all-reduces the gradients anyway)
        with _batch_stats(stats):
            lower, _ = bounds(bare, x, ball, "ibp", spec, upper=False)
            if s["beta"] > 0:
                crown, _ = bounds(bare, x, ball, "crown-ibp", spec, upper=False)
                lower = s["beta"] * crown + (1 - s["beta"]) * lower
        robust = F.cross_entropy(-lower, y)
        return s["kappa"] * clean + (1 - s["kappa"]) * robust


@dataclass(frozen=True)
class CROWNIBP(IBPTraining):
    """CROWN-IBP (Zhang et al. 2020): the margin bound mixes CROWN-IBP (weight beta, 1 -> 0 over
    the eps ramp) with IBP; kappa goes 1 -> 0 by default. Arguments as ``IBPTraining``."""

    kappa_end: float = 0.0
    # Fraction of training at which beta reaches 0; None: at ``ramp_end`` (the paper). An earlier
    # end saves compute: a CROWN-IBP step costs about 13x an IBP step on a small MNIST CNN on CPU.
    beta_end: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta_end is not None:
            _check("beta_end", self.beta_end, self.warmup, 1.0)

    def schedule(self, progress: float) -> dict[str, float]:
        s = super().schedule(progress)
        end = self.ramp_end if self.beta_end is None else self.beta_end
        s["beta"] = 1.0 - _ramp(progress, self.warmup, end)
        return s
