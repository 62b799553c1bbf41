from __future__ import annotations

import pytest
import torch

import robustlab as rl


@pytest.fixture(scope="session")
def mnist_test():
    """The first 1000 MNIST test points: x (1000, 1, 28, 28) in [0, 1], y (1000,)."""
    return rl.data.load("mnist", split="test", n=1000)


@pytest.fixture(scope="session")
def std_model():
    return rl.models.load("mnist-cnn")


@pytest.fixture(scope="session")
def at_model():
    return rl.models.load("mnist-cnn-at")


@pytest.fixture
def linf03():
    return rl.LpBall("linf", 0.3)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
