"""Architectures for certified training, and the loader of the shipped certified models."""
from __future__ import annotations

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


def load_certified(entry: object, state: dict[str, Tensor] | None) -> nn.Module:
    """ZooEntry loader: ``mnist_cnn_small`` with the shipped weights (``state``), in eval mode."""
    model = mnist_cnn_small()
    if state is None:
        raise FileNotFoundError(f"entry: weights of {getattr(entry, 'name', entry)!r} are missing; "
                                "train them with scripts/train_crownibp.py")
    model.load_state_dict(state, strict=True)
    return model.eval()
