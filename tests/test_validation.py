"""Bad input to every public function gets a ValueError/TypeError that names the argument."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import robustlab as rl
from robustlab.attacks import FGSM, PGD

T = rl.LpBall("linf", 0.3)


@pytest.fixture(scope="module")
def xy():
    return rl.data.load("mnist", n=8)


def _bad_inputs(x, y):
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    inf = x.clone()
    inf[1, 0, 3, 3] = float("inf")
    return [
        ((x.flatten()[:10], y), ValueError, "x: expected a batch"),
        ((x[:0], y[:0]), ValueError, "x: empty batch"),
        ((nan, y), ValueError, "x: contains NaN"),
        ((inf, y), ValueError, "x: contains NaN or Inf"),
        ((x * 255, y), ValueError, r"x: values must lie in \[0, 1\]"),
        ((x - 0.5, y), ValueError, r"x: values must lie in \[0, 1\]"),
        ((x.numpy(), y), TypeError, "x: expected a torch.Tensor"),
        (((x * 255).to(torch.uint8), y), TypeError, "x: expected a floating-point"),
        ((x, y[:3]), ValueError, "y: expected shape"),
        ((x, y.float()), TypeError, "y: expected an integer"),
        ((x, y + 10), ValueError, "y: label 1[0-9] out of range"),
        ((x, y - 10), ValueError, "y: class indices must be >= 0"),
    ]


@pytest.mark.parametrize("case", range(12))
@pytest.mark.parametrize("call", ["pgd", "fgsm", "evaluate"])
def test_bad_inputs_named(call, case, xy, std_model):
    (x, y), exc, match = _bad_inputs(*xy)[case]
    fn = {
        "pgd": lambda: PGD(T, steps=2)(std_model, x, y),
        "fgsm": lambda: FGSM(T)(std_model, x, y),
        "evaluate": lambda: rl.evaluate(std_model, x, y, T, batch_size=4),
    }[call]
    with pytest.raises(exc, match=match):
        fn()


class _WrongShape(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10].unsqueeze(1)  # (N, 1, 10)


class _OneClass(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :1]


class _Broken(nn.Module):
    def forward(self, x):
        return nn.functional.linear(x.flatten(1), torch.zeros(10, 5))


@pytest.mark.parametrize("model,match", [(_WrongShape().eval(), r"model: expected output of shape \(\d, n_classes\)"),
                                         (_OneClass().eval(), "model: expected at least 2 classes"),
                                         (_Broken().eval(), "model: forward pass failed"),
                                         (lambda x: "not a tensor", "model: expected the model to return a Tensor")])
def test_bad_model_named(model, match, xy):
    x, y = xy
    for fn in (lambda: PGD(T, steps=1)(model, x, y), lambda: rl.evaluate(model, x, y, T)):
        with pytest.raises((ValueError, TypeError), match=match):
            fn()


def test_target_checked(xy, std_model):
    x, y = xy
    with pytest.raises(ValueError, match="target: label 12 out of range"):
        PGD(T, steps=1)(std_model, x, y, target=torch.full_like(y, 12))
    with pytest.raises(ValueError, match="target: expected shape"):
        PGD(T, steps=1)(std_model, x, y, target=y[:2])


@pytest.mark.parametrize("kwargs,match", [({"steps": 0}, "steps"), ({"restarts": -1}, "restarts"),
                                          ({"step_size": -0.1}, "step_size"), ({"loss": "hinge"}, "loss"),
                                          ({"l1_sparsity": 1.0}, "l1_sparsity"), ({"steps": 2.5}, "steps")])
def test_bad_attack_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PGD(T, **kwargs)


def test_bad_threat_argument():
    with pytest.raises(TypeError, match="threat"):
        PGD("linf:0.3")  # type: ignore[arg-type]


def test_evaluate_arguments(xy, std_model, tmp_path):
    x, y = xy
    with pytest.raises(ValueError, match="batch_size"):
        rl.evaluate(std_model, x, y, T, batch_size=0)
    with pytest.raises(TypeError, match="threat"):
        rl.evaluate(std_model, x, y, "linf:0.3")
    with pytest.raises(ValueError, match="attacks: expected at least one"):
        rl.evaluate(std_model, x, y, T, attacks=[])
    with pytest.raises(ValueError, match="attacks: unknown attack"):
        rl.evaluate(std_model, x, y, T, attacks="pgd,nonsense")
    with pytest.raises(ValueError, match="store: folder"):
        rl.evaluate(std_model, x, y, T, store=tmp_path / "missing" / "runs.db")
    bad = tmp_path / "not-a-db.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="store: .* is not a robustlab SQLite store"):
        rl.evaluate(std_model, x, y, T, store=bad)


def test_data_arguments():
    with pytest.raises(ValueError, match="name: unknown dataset"):
        rl.data.load("cifar10")
    with pytest.raises(ValueError, match="split"):
        rl.data.load("mnist", split="validation")
    with pytest.raises(ValueError, match="n: mnist test has 10000 points"):
        rl.data.load("mnist", n=10001)
    with pytest.raises(ValueError, match="n: expected a positive int"):
        rl.data.load("mnist", n=0)
    with pytest.raises(ValueError, match="start"):
        rl.data.load("mnist", start=-1)


def test_models_arguments(tmp_path):
    with pytest.raises(ValueError, match="name: unknown model"):
        rl.models.load("resnet-9000")
    with pytest.raises(ValueError, match="builder_file: no such file"):
        rl.models.load_from_file(tmp_path / "nope.py")
    f = tmp_path / "m.py"
    f.write_text("import torch\ndef build():\n    return torch.nn.Linear(4, 2)\n")
    with pytest.raises(ValueError, match="weights: expected a .safetensors file"):
        rl.models.load_from_file(f, tmp_path / "w.pt")
    with pytest.raises(ValueError, match="builder: .* defines no callable 'make'"):
        rl.models.load_from_file(f, builder="make")
