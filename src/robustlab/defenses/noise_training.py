"""Gaussian data augmentation (Cohen et al. 2019): train the base classifier of a smoothed model
on inputs corrupted by the same noise the smoothing will add.

    recipe = GaussianAugmentation(sigma=0.25)
    loss = recipe.loss(model, x, y, generator, progress)   # scalar Tensor to minimise

A recipe is what the training loop (``robustlab.defenses.training``) asks for one batch: a
frozen dataclass with ``loss(model, x, y, generator, progress) -> Tensor``. The noise is not
clipped to [0, 1]: the smoothed classifier queries the base model at ``x + N(0, sigma^2 I)``,
unclipped, and training must see that same distribution.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class GaussianAugmentation:
    """Cross-entropy on ``x + sigma * N(0, I)``.

    Args:
        sigma: standard deviation of the noise, in input units ([0, 1] pixels); must be > 0.
        copies: noisy copies of each point per step (the batch grows ``copies`` times; 1 is
            Cohen et al.'s recipe).
    """

    sigma: float
    copies: int = 1

    def __post_init__(self) -> None:
        if not (self.sigma > 0):
            raise ValueError(f"sigma: must be > 0, got {self.sigma}")
        if self.copies < 1:
            raise ValueError(f"copies: must be >= 1, got {self.copies}")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
             progress: float) -> Tensor:
        """Mean cross-entropy over the noisy copies. x (N, ...) in [0, 1], y (N,) int64;
        ``progress`` (epochs done, fractional) is unused: the noise level is constant."""
        del progress
        if self.copies > 1:
            x = x.repeat_interleave(self.copies, dim=0)
            y = y.repeat_interleave(self.copies, dim=0)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device)
        return F.cross_entropy(model(x + self.sigma * noise.to(x.device)), y)

    def spec(self) -> str:
        return f"gaussian-augmentation:sigma={self.sigma},copies={self.copies}"


@dataclass(frozen=True)
class GaussianConsistency:
    """Gaussian augmentation with consistency regularisation (Jeong & Shin, NeurIPS 2020).

    Each point gets ``copies`` noisy copies ``x + sigma * N(0, I)``; the loss is the mean
    cross-entropy over the copies, plus ``weight`` times the mean KL divergence from the
    copies' average softmax to each copy's softmax, plus ``entropy`` times the entropy of that
    average. The KL term pushes the base classifier to answer the same on every noise draw,
    which raises pA (the top class's probability under noise) and so the certified radius.

    Args:
        sigma: noise standard deviation in input units ([0, 1] pixels); > 0.
        copies: noisy copies per point (>= 2; 2 is the paper's choice).
        weight: the KL term's weight (lambda in the paper); >= 0.
        entropy: the entropy term's weight (eta in the paper); >= 0.
    """

    sigma: float
    copies: int = 2
    weight: float = 10.0
    entropy: float = 0.5

    def __post_init__(self) -> None:
        if not (self.sigma > 0):
            raise ValueError(f"sigma: must be > 0, got {self.sigma}")
        if self.copies < 2:
            raise ValueError(f"copies: must be >= 2 (consistency compares copies), got {self.copies}")
        if self.weight < 0:
            raise ValueError(f"weight: must be >= 0, got {self.weight}")
        if self.entropy < 0:
            raise ValueError(f"entropy: must be >= 0, got {self.entropy}")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
             progress: float) -> Tensor:
        """x (N, ...) in [0, 1], y (N,) int64; scalar loss over N * copies noisy rows.
        ``progress`` is unused."""
        del progress
        n, m = x.shape[0], self.copies
        xr = x.repeat_interleave(m, dim=0)
        yr = y.repeat_interleave(m, dim=0)
        noise = torch.randn(xr.shape, generator=generator, dtype=x.dtype, device=generator.device)
        logits = model(xr + self.sigma * noise.to(x.device))
        ce = F.cross_entropy(logits, yr)
        logp = F.log_softmax(logits, dim=1).view(n, m, -1)
        avg = logp.exp().mean(dim=1)                                   # (N, K)
        log_avg = avg.clamp_min(1e-12).log()
        kl = (avg[:, None] * (log_avg[:, None] - logp)).sum(dim=2).mean()
        ent = -(avg * log_avg).sum(dim=1).mean()
        return ce + self.weight * kl + self.entropy * ent

    def spec(self) -> str:
        return (f"gaussian-consistency:sigma={self.sigma},copies={self.copies},"
                f"weight={self.weight},entropy={self.entropy}")


__all__ = ["GaussianAugmentation", "GaussianConsistency"]
