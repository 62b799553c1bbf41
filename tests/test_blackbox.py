"""Black-box attacks on the real shipped model, through the access levels (HTTP included):
strength within a budget, budgets never exceeded, returned points really adversarial."""
from __future__ import annotations

import pytest
import torch

import robustlab as rl
from robustlab.attacks import NES, SPSA, Boundary, HopSkipJump, Square
from robustlab.models import HTTPModel, LabelOnly, ScoreOnly, SklearnModel
from robustlab.threats import DIST_TOL


def _labels(net):
    return lambda x: net(x).argmax(1)


def _check(res, net, x, y, budget, target=None):
    """Budget, counts and validity, checked against the model itself."""
    assert res.queries is not None and res.queries.shape == (x.shape[0],)
    assert int(res.queries.max()) <= budget and int(res.queries.min()) >= 1
    assert res.forward_calls == int(res.queries.sum()) and res.backward_calls == 0
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    with torch.no_grad():
        pred = net(res.x_adv).argmax(1)
    truth = pred == target if target is not None else pred != y
    assert torch.equal(res.success, truth)


# -- decision-based ---------------------------------------------------------------------------
def test_hopskipjump_l2_over_http(label_server, net, batch):
    x, y = batch[0][:10], batch[1][:10]
    target = HTTPModel(label_server.url, access="label", encoding="base64", batch_size=4096)
    before = label_server.received
    res = HopSkipJump("l2", max_queries=1000, seed=0)(target, x, y)
    _check(res, net, x, y, 1000)
    assert label_server.received - before == res.forward_calls == target.queries
    assert res.success.all()
    # Measured on these 10 points: median L2 2.54, max 3.58 after 1000 queries.
    assert float(res.distance.median()) < 3.2
    assert torch.allclose(res.distance, (res.x_adv - x).flatten(1).norm(dim=1))


def test_hopskipjump_linf_and_seed(net, batch):
    x, y = batch[0][:8], batch[1][:8]
    target = LabelOnly(_labels(net))
    a = HopSkipJump("linf", max_queries=500, seed=3)(target, x, y)
    _check(a, net, x, y, 500)
    assert a.success.all()
    assert float(a.distance.median()) < 0.35  # measured: 0.234
    assert target.queries == a.forward_calls
    b = HopSkipJump("linf", max_queries=500, seed=3)(target, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)


def test_hopskipjump_eps_stops_early_and_stays_in_ball(net, batch):
    x, y = batch
    # A batch neighbour starts close: with eps, most points stop within a few dozen queries.
    res = HopSkipJump("l2:4.0", max_queries=500, init="batch")(LabelOnly(_labels(net)), x, y)
    _check(res, net, x, y, 500)
    assert res.distance.max() <= 4.0 + DIST_TOL
    assert res.success.float().mean() >= 0.6  # measured: 0.90, median 16 queries for those broken
    # Points within eps stop: most of the budget is left unspent.
    assert float(res.queries[res.success].float().median()) < 250
    fail = ~res.success
    assert torch.equal(res.x_adv[fail], x[fail])


def test_hopskipjump_targeted(net, batch):
    x, y = batch[0][:10], batch[1][:10]
    tgt = y.roll(1)
    tgt = torch.where(tgt == y, (y + 1) % 10, tgt)
    res = HopSkipJump(max_queries=600)(LabelOnly(_labels(net), n_classes=10), x, y, target=tgt)
    _check(res, net, x, y, 600, target=tgt)
    assert res.success.float().mean() >= 0.8


def test_boundary_attack(net, batch):
    x, y = batch[0][:10], batch[1][:10]
    res = Boundary(max_queries=500)(LabelOnly(_labels(net)), x, y)
    _check(res, net, x, y, 500)
    assert res.success.all()
    assert float(res.distance.median()) < 5.0  # measured: 3.06 after 1000 queries (10 points)


def test_budget_of_the_endpoint_is_never_exceeded(label_server, net, batch):
    x, y = batch[0][:5], batch[1][:5]
    target = HTTPModel(label_server.url, access="label", encoding="base64", batch_size=4096, max_queries=700)
    before = label_server.received
    with pytest.warns(UserWarning, match="query budget ran out"):
        res = HopSkipJump(max_queries=1000)(target, x, y)
    assert label_server.received - before == target.queries <= 700
    assert res.forward_calls == target.queries
    _check(res, net, x, y, 1000)


def test_label_attacks_refuse_nothing_but_scores_attacks_refuse_labels(net, batch):
    x, y = batch[0][:4], batch[1][:4]
    for attack in (Square(rl.LpBall("linf", 0.3), max_queries=10), NES(rl.LpBall("linf", 0.3), max_queries=100),
                   SPSA(rl.LpBall("linf", 0.3), max_queries=100)):
        with pytest.raises(TypeError, match="model.*label"):
            attack(LabelOnly(_labels(net)), x, y)


# -- score-based ------------------------------------------------------------------------------
def test_square_over_http_scores(score_server, net, batch):
    x, y = batch[0][:10], batch[1][:10]
    target = HTTPModel(score_server.url, access="score", encoding="base64")
    res = Square(rl.LpBall("linf", 0.3), max_queries=300, seed=0)(target, x, y)
    _check(res, net, x, y, 300)
    assert res.success.all()  # measured: all broken, median 25 queries (100 points, 1000 budget)
    assert target.queries == res.forward_calls
    assert res.distance.max() <= 0.3 + DIST_TOL


@pytest.mark.parametrize("attack_cls, min_rate", [(NES, 0.3), (SPSA, 0.5)])
def test_nes_spsa_break_standard_model(net, batch, attack_cls, min_rate):
    x, y = batch
    threat = rl.LpBall("linf", 0.3)
    res = attack_cls(threat, max_queries=400, seed=0)(ScoreOnly(net), x[:12], y[:12])
    x, y = x[:12], y[:12]
    _check(res, net, x, y, 400)
    assert res.distance.max() <= 0.3 + DIST_TOL
    # Measured on these 12 points, 400 queries: NES 50%, SPSA 75% (1000 queries, 20 points: 85%, 100%).
    assert res.success_rate >= min_rate


# -- scikit-learn ---------------------------------------------------------------------------
def test_sklearn_classifier_attacked(digits_clf):
    x, y = rl.data.load("digits", split="test", n=50)
    scores = SklearnModel(digits_clf, input_shape=(1, 8, 8))
    keep = scores(x).argmax(1) == y
    x, y = x[keep], y[keep]
    scores.reset_queries()
    res = Square(rl.LpBall("linf", 0.2), max_queries=300)(scores, x, y)
    assert scores.queries == res.forward_calls and int(res.queries.max()) <= 300
    pred = torch.from_numpy(digits_clf.predict(res.x_adv.flatten(1).numpy()))
    assert torch.equal(res.success, pred != y)
    assert res.success_rate >= 0.8  # measured: 96%, median 19 queries
    labels = SklearnModel(digits_clf, access="label")
    res = HopSkipJump("l2", max_queries=500)(labels, x, y)
    pred = torch.from_numpy(digits_clf.predict(res.x_adv.flatten(1).numpy()))
    assert res.success.all() and torch.equal(res.success, pred != y)
    assert float(res.distance.median()) < 1.2  # measured: 0.67


# -- arguments ------------------------------------------------------------------------------
@pytest.mark.parametrize("make, arg", [
    (lambda: HopSkipJump("l1"), "norm"),
    (lambda: HopSkipJump("l1:2.0"), "threat"),
    (lambda: Boundary("linf:0.1"), "threat"),
    (lambda: HopSkipJump(max_queries=0), "max_queries"),
    (lambda: HopSkipJump(gamma=0.0), "gamma"),
    (lambda: HopSkipJump("l2:-1.0"), "eps"),
    (lambda: HopSkipJump(init="zeros"), "init"),
    (lambda: Boundary(spherical_step=1.5), "spherical_step"),
    (lambda: Boundary(step_adaptation=1.0), "step_adaptation"),
    (lambda: NES(rl.LpBall("linf", 0.3), momentum=1.0), "momentum"),
    (lambda: SPSA(rl.LpBall("linf", 0.3), samples=0), "samples"),
    (lambda: SPSA(rl.LpBall("linf", 0.3), delta=0.0), "delta"),
    (lambda: SPSA("linf"), "threat"),
])
def test_bad_arguments_name_the_argument(make, arg):
    with pytest.raises((ValueError, TypeError), match=arg):
        make()


def test_bad_inputs_name_the_argument(net, batch):
    x, y = batch[0][:4], batch[1][:4]
    hsj = HopSkipJump(max_queries=20)
    with pytest.raises(ValueError, match="starting_points"):
        hsj(net, x, y, starting_points=x[:2])
    with pytest.raises(ValueError, match="y"):
        hsj(net, x, y + 10)
    with pytest.raises(ValueError, match="x"):
        hsj(net, x - 1, y)
    with pytest.raises(ValueError, match="target"):
        hsj(LabelOnly(_labels(net), n_classes=10), x, y, target=torch.full_like(y, 11))


def test_the_walks_take_a_threat_and_the_old_keywords_still_work_with_a_warning():
    with pytest.warns(DeprecationWarning, match="pass a threat"):
        old = HopSkipJump(norm="linf", eps=0.1, max_queries=50)
    assert old == HopSkipJump("linf:0.1", max_queries=50) == HopSkipJump(rl.LpBall("linf", 0.1), max_queries=50)
    assert (old.norm, old.eps) == ("linf", 0.1)
    with pytest.warns(DeprecationWarning):
        assert Boundary(eps=2.0) == Boundary("l2:2.0")
    assert HopSkipJump("linf").eps is None and HopSkipJump().norm == "l2"  # minimum norm, run to the budget
    with pytest.raises(TypeError, match="threat"):
        HopSkipJump("l2:1.0", eps=2.0)
