"""APGD and APGD-T: strength on the shipped models, validity of the returned points, counted
cost, seeding, model restoration, argument checks."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import robustlab as rl
from robustlab.attacks.apgd import APGD, APGDT, dlr_loss, project_l1_box
from robustlab.attacks.gradient import PGD


def _robust(model, res, y):
    with torch.no_grad():
        return (model(res.x_adv).argmax(dim=1) == y).float().mean().item()


def _check_valid(model, threat, x, y, res):
    d = threat.distance(res.x_adv, x)
    assert float(d.max()) <= threat.eps + 1e-5
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    with torch.no_grad():
        pred = model(res.x_adv).argmax(dim=1)
    assert torch.equal(res.success, pred != y)


def test_apgdt_at_least_as_strong_as_pgd40_on_at_model(at_model, mnist_test):
    x, y = mnist_test[0][:60], mnist_test[1][:60]
    threat = rl.LpBall("linf", 0.3)
    pgd = PGD(threat, steps=40)(at_model, x, y)
    apgdt = APGDT(threat, n_target_classes=2)(at_model, x, y)
    _check_valid(at_model, threat, x, y, apgdt)
    assert _robust(at_model, apgdt, y) <= _robust(at_model, pgd, y)
    # A real defense: neither attack may find the model trivially broken.
    assert _robust(at_model, pgd, y) > 0.5


def test_apgd_ce_linf_matches_or_beats_pgd40_on_standard_model(std_model, mnist_test):
    x, y = mnist_test[0][:100], mnist_test[1][:100]
    threat = rl.LpBall("linf", 0.1)
    pgd = PGD(threat, steps=40)(std_model, x, y)
    res = APGD(threat, loss="ce", steps=40)(std_model, x, y)
    _check_valid(std_model, threat, x, y, res)
    assert _robust(std_model, res, y) <= _robust(std_model, pgd, y)


def test_apgd_l1_far_stronger_than_pgd_l1(std_model, mnist_test):
    # The L1 variant (sparse steps, exact projection onto ball and box) is the point of
    # "Mind the box": plain L1 PGD wastes its budget on the box constraints.
    x, y = mnist_test[0][:60], mnist_test[1][:60]
    threat = rl.LpBall("l1", 6.0)
    pgd = PGD(threat, steps=30)(std_model, x, y)
    res = APGD(threat, steps=30)(std_model, x, y)
    _check_valid(std_model, threat, x, y, res)
    assert _robust(std_model, res, y) <= _robust(std_model, pgd, y) - 0.1


@pytest.mark.parametrize("norm,eps", [("l2", 1.0), ("l1", 5.0)])
def test_apgd_dlr_and_l2_l1_points_valid(std_model, mnist_test, norm, eps):
    x, y = mnist_test[0][:40], mnist_test[1][:40]
    threat = rl.LpBall(norm, eps)
    res = APGD(threat, loss="dlr", steps=20)(std_model, x, y)
    _check_valid(std_model, threat, x, y, res)
    assert res.success.any()


def test_counted_calls_within_budget(std_model, mnist_test):
    x, y = mnist_test[0][:30], mnist_test[1][:30]
    threat = rl.LpBall("linf", 0.05)
    steps, restarts = 20, 2
    res = APGD(threat, steps=steps, restarts=restarts)(std_model, x, y)
    assert 0 < res.backward_calls == res.forward_calls <= 30 * (steps + 1) * restarts
    t = APGDT(threat, steps=steps, n_target_classes=2)(std_model, x, y)
    assert t.forward_calls <= 30 * (1 + 2 * (steps + 1))
    assert t.backward_calls <= 30 * 2 * (steps + 1)
    # Early stop: broken points leave, so an attack at a huge radius costs about one pass each.
    big = APGD(rl.LpBall("linf", 0.5), steps=steps)(std_model, x, y)
    assert big.success.all() and big.forward_calls <= 30 * 3


def test_eot_multiplies_passes(std_model, mnist_test):
    x, y = mnist_test[0][:10], mnist_test[1][:10]
    threat = rl.LpBall("linf", 0.01)
    a = APGD(threat, steps=5, early_stop=False)(std_model, x, y)
    b = APGD(threat, steps=5, eot_iter=3, early_stop=False)(std_model, x, y)
    assert a.backward_calls == 10 * 6 and b.backward_calls == 3 * 10 * 6


def test_same_seed_same_points(std_model, mnist_test):
    x, y = mnist_test[0][:20], mnist_test[1][:20]
    threat = rl.LpBall("l2", 0.5)
    r1 = APGD(threat, steps=10, seed=3)(std_model, x, y)
    r2 = APGD(threat, steps=10, seed=3)(std_model, x, y)
    r3 = APGD(threat, steps=10, seed=4)(std_model, x, y)
    assert torch.equal(r1.x_adv, r2.x_adv)
    assert not torch.equal(r1.x_adv, r3.x_adv)


def test_targeted_apgd_reaches_target(std_model, mnist_test):
    x, y = mnist_test[0][:30], mnist_test[1][:30]
    target = (y + 1) % 10
    threat = rl.LpBall("linf", 0.3)
    for attack in (APGD(threat, loss="ce", steps=30), APGDT(threat, steps=30)):
        res = attack(std_model, x, y, target=target)
        with torch.no_grad():
            pred = std_model(res.x_adv).argmax(dim=1)
        assert torch.equal(res.success, pred == target)
        assert res.success.float().mean() > 0.8


def test_model_state_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    with pytest.warns(UserWarning, match="training mode"):
        APGDT(rl.LpBall("linf", 0.1), steps=5, n_target_classes=2)(model, x, y)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize("kwargs,name", [
    (dict(steps=0), "steps"), (dict(restarts=0), "restarts"), (dict(loss="hinge"), "loss"),
    (dict(rho=1.5), "rho"), (dict(momentum=0.0), "momentum"), (dict(eot_iter=0), "eot_iter"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        APGD(rl.LpBall("linf", 0.1), **kwargs)
    with pytest.raises(ValueError, match=name):
        APGDT(rl.LpBall("linf", 0.1), **kwargs)


def test_bad_inputs(std_model, mnist_test):
    x, y = mnist_test[0][:4], mnist_test[1][:4]
    with pytest.raises(ValueError, match="n_target_classes"):
        APGDT(rl.LpBall("linf", 0.1), n_target_classes=0)
    with pytest.raises(TypeError, match="threat"):
        APGD("linf:0.3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x"):
        APGD(rl.LpBall("linf", 0.1))(std_model, x * 2, y)
    with pytest.raises(ValueError, match="y"):
        APGD(rl.LpBall("linf", 0.1))(std_model, x, y + 10)
    two = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    with pytest.raises(ValueError, match="model"):
        APGD(rl.LpBall("linf", 0.1), loss="dlr")(two, x, y % 2)


def test_dlr_is_shift_and_scale_invariant():
    torch.manual_seed(1)
    z = torch.randn(16, 10)
    y = torch.randint(0, 10, (16,))
    t = (y + 3) % 10
    for target in (None, t):
        a = dlr_loss(z, y, target)
        b = dlr_loss(3.0 * z + 7.0, y, target)
        assert torch.allclose(a, b, atol=1e-5)
    # Misclassified exactly when the untargeted DLR is positive.
    assert torch.equal(dlr_loss(z, y) > 0, z.argmax(dim=1) != y)


def test_project_l1_box_is_the_euclidean_projection():
    torch.manual_seed(2)
    x = torch.rand(64, 12, dtype=torch.float64)
    v = x + 0.8 * torch.randn(64, 12, dtype=torch.float64)
    eps = 1.0
    p = project_l1_box(v, x, eps, iters=60)
    assert float((p - x).abs().sum(dim=1).max()) <= eps + 1e-9
    assert float(p.min()) >= 0 and float(p.max()) <= 1
    # Optimality: no random feasible point is closer to v.
    for _ in range(200):
        q = rl.LpBall("l1", eps).project(p + 0.05 * torch.randn_like(p), x)
        assert bool(((q - v).norm(dim=1) >= (p - v).norm(dim=1) - 1e-9).all())
