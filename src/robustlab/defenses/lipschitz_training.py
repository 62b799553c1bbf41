"""Margin training for 1-Lipschitz networks: cross-entropy on logits whose true class is
handicapped by the margin a certificate at radius ``eps`` needs.

    recipe = LipschitzMargin(eps=2.0, temperature=0.25)
    loss = recipe.loss(model, x, y, generator, progress)

A network with constant L certifies radius r at x when its top-2 margin exceeds sqrt(2) L r.
The loss is CE((z - sqrt(2) L eps e_y) / T) (Lipschitz-margin training, Tsuzuku et al. 2018,
the offset cross-entropy of Prach & Lampert 2022): the model is rewarded only for margins past
the certificate threshold; the temperature T sets how sharply. With ``pairwise=True`` and a
model that states per-pair constants K (``model.pairwise_lipschitz()``, see
robustlab.certify.lipschitz), the offsets are the ones the per-pair certificate needs:
CE((z + eps K_y) / T), K_y the row of the true class (K_yy = 0), GloRo-style.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class LipschitzMargin:
    """Args:
        eps: the L2 radius (input units) whose certificate training aims at; > 0.
        temperature: softmax temperature of the offset cross-entropy; > 0.
        pairwise: offsets from the model's per-pair constants when it states them.
    """

    eps: float
    temperature: float = 0.25
    pairwise: bool = False

    def __post_init__(self) -> None:
        if not (self.eps > 0):
            raise ValueError(f"eps: must be > 0, got {self.eps}")
        if not (self.temperature > 0):
            raise ValueError(f"temperature: must be > 0, got {self.temperature}")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
             progress: float) -> Tensor:
        """Scalar offset cross-entropy. ``model.lipschitz`` (1 when absent) scales the offset."""
        del generator, progress
        lip = float(getattr(model, "lipschitz", 1.0))
        z = model(x)
        pair = getattr(model, "pairwise_lipschitz", None) if self.pairwise else None
        k = pair() if callable(pair) else None
        if k is not None:
            return F.cross_entropy((z + self.eps * k[y].to(z.dtype)) / self.temperature, y)
        offset = math.sqrt(2.0) * lip * self.eps
        z = z - offset * F.one_hot(y, z.shape[1]).to(z.dtype)
        return F.cross_entropy(z / self.temperature, y)

    def spec(self) -> str:
        extra = ",pairwise=True" if self.pairwise else ""
        return f"lipschitz-margin:eps={self.eps},temperature={self.temperature}{extra}"


__all__ = ["LipschitzMargin"]
