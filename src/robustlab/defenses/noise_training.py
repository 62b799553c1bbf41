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


__all__ = ["GaussianAugmentation"]
