"""Small models that really mask gradients, built on the shipped mnist-cnn (a plain helper
module, imported by the diagnostics tests; no fixtures here).

Each is a standard, non-robust network behind a component that hides its gradient from a
white-box attacker, so a naive PGD reports a robust accuracy the model does not have:

    QuantizedInput      rounds pixels to 16 levels: torch.round has a zero gradient everywhere
    SaturatedSoftmax    returns softmax(1000 * logits): probabilities saturate to exact 0 / 1
    RandomizedTransform random shift by up to 2 pixels plus Gaussian noise, fresh on every call
    PermutedLabels      predicts class (k + 1) mod 10 for what the network sees as k: below chance
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import robustlab as rl


def base() -> nn.Module:
    return rl.models.load("mnist-cnn")


class _Masked(nn.Module):
    """Wraps the shipped standard network; built in eval mode like a loaded model."""

    def __init__(self, net: nn.Module | None) -> None:
        super().__init__()
        self.net = net if net is not None else base()
        self.eval()


class QuantizedInput(_Masked):
    """Input quantization to ``levels`` grey levels: non-differentiable (zero gradient)."""

    def __init__(self, net: nn.Module | None = None, levels: int = 16) -> None:
        super().__init__(net)
        self.levels = levels

    def forward(self, x: Tensor) -> Tensor:
        q = torch.round(x * (self.levels - 1)) / (self.levels - 1)
        return self.net(q)


class SaturatedSoftmax(_Masked):
    """Probabilities of a sharpened softmax: the rows are one-hot in float32, gradients vanish."""

    def __init__(self, net: nn.Module | None = None, temperature: float = 1000.0) -> None:
        super().__init__(net)
        self.temperature = temperature

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.net(x) * self.temperature, dim=1)


class RandomizedTransform(_Masked):
    """Random translation (pad 2, random crop) and Gaussian noise (sigma 0.1), drawn from the
    global torch RNG on every call, as input-randomization defenses do."""

    def __init__(self, net: nn.Module | None = None, shift: int = 2, sigma: float = 0.1) -> None:
        super().__init__(net)
        self.shift = shift
        self.sigma = sigma

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        s = self.shift
        padded = F.pad(x, (s, s, s, s))
        dy, dx = (int(v) for v in torch.randint(0, 2 * s + 1, (2,)))
        x = padded[:, :, dy:dy + h, dx:dx + w]
        x = (x + self.sigma * torch.randn_like(x)).clamp(0, 1)
        return self.net(x)


class PermutedLabels(_Masked):
    """Logits rolled by one class: a well-trained network whose labels are all wrong."""

    def __init__(self, net: nn.Module | None = None) -> None:
        super().__init__(net)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).roll(1, dims=1)
