"""Reference architectures. Each builder returns a fresh, randomly initialised nn.Module that
takes [0, 1] inputs (normalisation inside) and returns logits."""
from __future__ import annotations

from torch import nn

from robustlab.models.layers import Normalize

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def mnist_cnn() -> nn.Sequential:
    """Two strided convolutions (32, 64 channels, 4x4, stride 2) and a 256-unit hidden layer.

    Input (N, 1, 28, 28) in [0, 1]; output (N, 10) logits; 0.84M parameters. A wider version of
    the fast-AT MNIST network (Wong et al. 2020), chosen so PGD on 1000 points takes seconds on
    a CPU while leaving the capacity adversarial training at eps 0.3 needs.
    """
    return nn.Sequential(
        Normalize(MNIST_MEAN, MNIST_STD),
        nn.Conv2d(1, 32, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def digits_mlp() -> nn.Sequential:
    """A 2-layer MLP for scikit-learn's 8x8 digits: input (N, 1, 8, 8), output (N, 10)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


BUILDERS = {"mnist_cnn": mnist_cnn, "digits_mlp": digits_mlp}
