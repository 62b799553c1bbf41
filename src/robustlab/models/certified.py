"""Architectures for certified training, and the loader of the shipped certified models."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robustlab.models.architectures import MNIST_MEAN, MNIST_STD
from robustlab.models.layers import Normalize


def mnist_cnn_small() -> nn.Sequential:
    """The small IBP network of Gowal et al. (2018), with stride-2 second conv for CPU speed.

    Conv 16x4x4/2 -> ReLU -> Conv 32x4x4/2 -> ReLU -> FC 100 -> ReLU -> FC 10, Normalize first.
    Input (N, 1, 28, 28) in [0, 1]; output (N, 10) logits; 0.17M parameters. Few, wide-stride
    layers keep interval bounds tight and a certified-training step cheap on a CPU.
    """
    return nn.Sequential(
        Normalize(MNIST_MEAN, MNIST_STD),
        nn.Conv2d(1, 16, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


def mnist_cnn_bn(c1: int = 32, c2: int = 64, hidden: int = 256) -> nn.Sequential:
    """A wider small CNN with BatchNorm after each convolution, for IBP / CROWN-IBP training
    (BatchNorm and IBP initialisation after Shi et al. 2021; the widths of ``mnist_cnn``).

    Normalize -> Conv c1x4x4/2 -> BN -> ReLU -> Conv c2x4x4/2 -> BN -> ReLU -> FC hidden -> ReLU
    -> FC 10. Input (N, 1, 28, 28) in [0, 1]; output (N, 10) logits; 0.84M parameters with the
    defaults. Bound propagation reads BatchNorm in eval mode as a per-channel affine map.
    """
    return nn.Sequential(
        Normalize(MNIST_MEAN, MNIST_STD),
        nn.Conv2d(1, c1, 4, stride=2, padding=1),
        nn.BatchNorm2d(c1),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 4, stride=2, padding=1),
        nn.BatchNorm2d(c2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(c2 * 7 * 7, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def ibp_init(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """IBP initialisation (Shi et al. 2021) of every Linear / Conv2d but the last, in place.

    Weights ~ N(0, (sqrt(2 pi) / fan_in)^2), biases 0, so that at initialisation an interval's
    width neither explodes nor vanishes from layer to layer. Returns ``model``.
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        for m in layers[:-1]:
            fan_in = m.weight[0].numel()
            m.weight.normal_(0.0, math.sqrt(2 * math.pi) / fan_in, generator=generator)
            if m.bias is not None:
                m.bias.zero_()
    return model


ARCHITECTURES = {"mnist_cnn_small": mnist_cnn_small, "mnist_cnn_bn": mnist_cnn_bn}


def load_certified(entry: object, state: dict[str, Tensor] | None) -> nn.Module:
    """ZooEntry loader: the entry's architecture (``mnist_cnn_small`` or ``mnist_cnn_bn``) with
    the shipped weights (``state``), in eval mode."""
    arch = str(getattr(entry, "architecture", "mnist_cnn_small"))
    if arch not in ARCHITECTURES:
        raise ValueError(f"entry: unknown certified architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    model = ARCHITECTURES[arch]()
    if state is None:
        raise FileNotFoundError(f"entry: weights of {getattr(entry, 'name', entry)!r} are missing; "
                                "train them with scripts/train_crownibp.py")
    model.load_state_dict(state, strict=True)
    return model.eval()
