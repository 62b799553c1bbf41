"""Shipped data and models: shapes, ranges, splits, accuracy, safe loading."""
from __future__ import annotations

import json

import pytest
import torch

import robustlab as rl


def test_mnist_splits_and_ranges():
    x, y = rl.data.load("mnist", split="train")
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.bincount(y).min() > 5000
    xt, yt = rl.data.load("mnist", split="test")
    assert xt.shape == (10000, 1, 28, 28)
    assert yt[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the standard test order
    x5, y5 = rl.data.load("mnist", split="test", n=5, start=2)
    assert torch.equal(x5, xt[2:7]) and torch.equal(y5, yt[2:7])


def test_digits_fallback():
    x, y = rl.data.load("digits", split="train")
    xt, yt = rl.data.load("digits", split="test")
    assert x.shape == (1297, 1, 8, 8) and xt.shape == (500, 1, 8, 8)
    assert 0.0 <= float(x.min()) and float(x.max()) == 1.0
    assert set(yt.tolist()) == set(range(10))
    assert rl.data.info("digits").n_classes == 10


@pytest.mark.parametrize("name,min_acc", [("mnist-cnn", 0.99), ("mnist-cnn-at", 0.97)])
def test_shipped_models_accuracy_and_mode(name, min_acc):
    model = rl.models.load(name)
    assert not model.training
    x, y = rl.data.load("mnist", split="test")
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 2000]).argmax(1) for i in range(0, 10000, 2000)])
    acc = float((pred == y).float().mean())
    assert acc >= min_acc
    card = rl.models.card(name)
    assert card["clean_accuracy_test_10k"] == pytest.approx(acc, abs=1e-4)
    assert card["training"]["seed"] is not None and "script" in card


def test_normalize_inside_model():
    model = rl.models.load("mnist-cnn")
    assert isinstance(model[0], rl.models.Normalize)
    with pytest.raises(ValueError, match="std"):
        rl.models.Normalize([0.5], [0.0])


def test_user_model_round_trip(tmp_path):
    f = tmp_path / "net.py"
    f.write_text("import robustlab\ndef build():\n    return robustlab.models.mnist_cnn()\n")
    src = rl.models.load("mnist-cnn")
    w = tmp_path / "net.safetensors"
    rl.models.save(src, w, {"note": "copy"})
    loaded = rl.models.load_from_file(f, w)
    assert not loaded.training
    assert json.loads(w.with_suffix(".json").read_text()) == {"note": "copy"}
    x, _ = rl.data.load("mnist", n=16)
    with torch.no_grad():
        assert torch.equal(loaded(x), src(x))
    assert rl.models.fingerprint(loaded) == rl.models.fingerprint(src)
    with torch.no_grad():
        next(loaded.parameters()).add_(1e-3)
    assert rl.models.fingerprint(loaded) != rl.models.fingerprint(src)


def test_weights_mismatch_is_an_error(tmp_path):
    f = tmp_path / "small.py"
    f.write_text("import torch\ndef build():\n    return torch.nn.Linear(3, 2)\n")
    w = tmp_path / "w.safetensors"
    rl.models.save(torch.nn.Linear(4, 2), w)
    with pytest.raises(ValueError, match=r"^weights: .* does not fit build\(\).*weight: \(2, 4\) vs \(2, 3\)"):
        rl.models.load_from_file(f, w)
