"""Fashion-MNIST from Debian's dataset-fashion-mnist, and the shipped fashion-cnn-at model."""
from __future__ import annotations

import pytest
import torch

import robustlab as rl
from robustlab.data import fashion_mnist

needs_files = pytest.mark.skipif(not (fashion_mnist.FOLDER / "t10k-images-idx3-ubyte.gz").is_file(),
                                 reason="Fashion-MNIST files absent (apt-get install dataset-fashion-mnist)")


@needs_files
def test_loads_the_test_split_and_the_model_is_robust():
    torch.set_num_threads(1)
    x, y = rl.data.load("fashion-mnist", "test", n=200, start=100)
    assert x.shape == (200, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and set(y.tolist()) <= set(range(10))
    model = rl.models.load("fashion-cnn-at")
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    assert clean > 0.75  # card: 84.2% on the 10k test points
    res = rl.attacks.PGD(rl.LpBall("linf", 0.1), steps=10, seed=0)(model, x, y)
    assert 0.5 < 1 - res.success_rate < clean  # adversarially trained: most points survive PGD-10


@needs_files
def test_bad_arguments_name_split_and_start():
    with pytest.raises(ValueError, match="^split"):
        rl.data.load("fashion-mnist", "valid")
    with pytest.raises(ValueError, match="^start"):
        rl.data.load("fashion-mnist", "test", start=10000)
