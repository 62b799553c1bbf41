"""Square attack: strength on the shipped standard model, budgets, validity, contract."""
from __future__ import annotations

import pytest
import torch

import robustlab as rl
from robustlab.attacks.square import Square
from robustlab.threats import DIST_TOL


@pytest.fixture(scope="module")
def model():
    return rl.models.load("mnist-cnn")


@pytest.fixture(scope="module")
def batch():
    return rl.data.load("mnist", n=100)


class CountingScores:
    """A plain score callable (no nn.Module) that counts every input it receives."""

    def __init__(self, net):
        self.net = net
        self.received = 0

    def __call__(self, x):
        self.received += x.shape[0]
        with torch.no_grad():
            return self.net(x)


def _check_valid(res, model, x, y, threat, budget, target=None):
    assert res.distance.max() <= threat.eps + DIST_TOL
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    assert torch.allclose(res.distance, threat.distance(res.x_adv, x))
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    truth = pred == target if target is not None else pred != y
    assert torch.equal(res.success, truth)
    assert res.queries is not None and res.queries.shape == (x.shape[0],)
    assert int(res.queries.max()) <= budget
    assert int(res.queries.min()) >= 1
    assert res.forward_calls == int(res.queries.sum())
    assert res.backward_calls == 0


def test_linf_breaks_standard_model_through_score_callable(model, batch):
    x, y = batch
    threat = rl.LpBall("linf", 0.3)
    target = CountingScores(model)
    res = Square(threat, max_queries=500, seed=0)(target, x, y)
    _check_valid(res, model, x, y, threat, 500)
    # Measured: 100% success, median 25 queries (1000 budget, first 100 test points).
    assert res.success_rate >= 0.9
    assert float(res.queries.float().median()) <= 150
    assert target.received == res.forward_calls


def test_l2_and_targeted(model, batch):
    x, y = batch[0][:40], batch[1][:40]
    threat = rl.LpBall("l2", 3.0)
    res = Square(threat, max_queries=300, p_init=0.1, seed=1)(model, x, y)
    _check_valid(res, model, x, y, threat, 300)
    assert res.success_rate >= 0.5
    tgt = (y + 1) % 10
    linf = rl.LpBall("linf", 0.3)
    res_t = Square(linf, max_queries=300, seed=0)(model, x, y, target=tgt)
    _check_valid(res_t, model, x, y, linf, 300, target=tgt)
    assert res_t.success_rate >= 0.5


def test_budget_is_exact_on_robust_points(model, batch):
    x, y = batch[0][:10], batch[1][:10]
    threat = rl.LpBall("linf", 0.02)  # too small to break anything
    res = Square(threat, max_queries=37, seed=0)(model, x, y)
    _check_valid(res, model, x, y, threat, 37)
    assert torch.equal(res.queries[~res.success], torch.full_like(res.queries[~res.success], 37))


def test_seed_reproducible_and_model_restored(model, batch):
    x, y = batch[0][:20], batch[1][:20]
    threat = rl.LpBall("linf", 0.2)
    model.train()
    with pytest.warns(UserWarning, match="training mode"):
        a = Square(threat, max_queries=100, seed=3)(model, x, y)
    assert model.training
    model.eval()
    b = Square(threat, max_queries=100, seed=3)(model, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    assert all(p.grad is None for p in model.parameters())


def test_clean_misclassified_costs_one_query(model, batch):
    x = batch[0][:8]
    with torch.no_grad():
        wrong = (model(x).argmax(1) + 1) % 10
    res = Square(rl.LpBall("linf", 0.3), max_queries=50)(model, x, wrong)
    assert res.success.all() and torch.equal(res.queries, torch.ones(8, dtype=torch.int64))
    assert torch.equal(res.x_adv, x)


@pytest.mark.parametrize("kwargs, arg", [
    ({"max_queries": 0}, "max_queries"),
    ({"p_init": 0.0}, "p_init"),
    ({"p_init": 1.5}, "p_init"),
    ({"loss": "hinge"}, "loss"),
])
def test_bad_arguments_name_the_argument(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        Square(rl.LpBall("linf", 0.3), **kwargs)


def test_bad_inputs(model, batch):
    x, y = batch[0][:4], batch[1][:4]
    with pytest.raises(ValueError, match="threat"):
        Square(rl.LpBall("l1", 5.0))
    with pytest.raises(TypeError, match="threat"):
        Square("linf")
    sq = Square(rl.LpBall("linf", 0.3), max_queries=10)
    with pytest.raises(ValueError, match="x"):
        sq(model, x * 2, y)
    with pytest.raises(ValueError, match="y"):
        sq(model, x, y + 10)
    with pytest.raises(ValueError, match="target"):
        sq(model, x, y, target=torch.full_like(y, 12))
    with pytest.raises(ValueError, match="model"):
        sq(lambda t: torch.zeros(t.shape[0]), x, y)
