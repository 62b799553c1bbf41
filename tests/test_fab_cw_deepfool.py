"""FAB, Carlini-Wagner L2 and DeepFool: minimal distances against FGSM's on the shipped
models, validity of bounded mode, the eps curve, counted cost, argument checks."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import robustlab as rl
from robustlab.attacks.cw import CarliniWagner
from robustlab.attacks.deepfool import DeepFool
from robustlab.attacks.fab import FAB, min_norm_box_step
from robustlab.attacks.gradient import FGSM
from robustlab.evaluation.curves import combine, minimal_distances, robust_accuracy_curve


def _fgsm_minimal(model, x, y, norm, grid):
    """Smallest radius on ``grid`` at which FGSM breaks each point (inf if none)."""
    d = torch.full((x.shape[0],), float("inf"))
    for e in sorted(grid, reverse=True):
        res = FGSM(rl.LpBall(norm, float(e)))(model, x, y)
        d[res.success] = float(e)
    return d


def _assert_minimal_valid(model, threat, x, y, res):
    found = torch.isfinite(res.distance)
    assert torch.equal(found, res.success)
    with torch.no_grad():
        pred = model(res.x_adv).argmax(dim=1)
    assert bool((pred[found] != y[found]).all())
    assert torch.allclose(res.distance[found], threat.distance(res.x_adv, x)[found], atol=1e-5)
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1


@pytest.fixture(scope="module")
def pts(mnist_test):
    return mnist_test[0][:30], mnist_test[1][:30]


def test_cw_and_deepfool_l2_distances_below_fgsm(std_model, pts):
    x, y = pts
    threat = rl.LpBall("l2", 1.0)
    fgsm = _fgsm_minimal(std_model, x, y, "l2", [0.25 * k for k in range(1, 25)])
    df = DeepFool(threat, minimal=True)(std_model, x, y)
    _assert_minimal_valid(std_model, threat, x, y, df)
    assert df.success.float().mean() >= 0.9
    assert df.distance.median() < fgsm.median()
    # C&W at its default budget on fewer points: it optimises the distance itself, so it
    # beats FGSM and, in the median, DeepFool's first crossing.
    k = 12
    cw = CarliniWagner(threat, minimal=True)(std_model, x[:k], y[:k])
    _assert_minimal_valid(std_model, threat, x[:k], y[:k], cw)
    assert bool(cw.success.all())
    assert cw.distance.median() < fgsm[:k].median()
    assert cw.distance.median() <= df.distance[:k].median()


def test_deepfool_linf_distances_below_fgsm(std_model, pts):
    x, y = pts
    threat = rl.LpBall("linf", 0.1)
    fgsm = _fgsm_minimal(std_model, x, y, "linf", [0.01 * k for k in range(1, 51)])
    df = DeepFool(threat, minimal=True)(std_model, x, y)
    _assert_minimal_valid(std_model, threat, x, y, df)
    assert df.distance.median() < fgsm.median()
    fab = FAB(threat, n_target_classes=3, minimal=True, steps=30)(std_model, x, y)
    _assert_minimal_valid(std_model, threat, x, y, fab)
    assert fab.distance.median() <= df.distance.median()


def test_fab_points_adversarial_and_inside_the_ball(std_model, pts):
    x, y = pts
    for threat in (rl.LpBall("linf", 0.1), rl.LpBall("l2", 1.5), rl.LpBall("l1", 10.0)):
        for attack in (FAB(threat, steps=30), FAB(threat, n_target_classes=3, steps=30)):
            res = attack(std_model, x, y)
            assert float(threat.distance(res.x_adv, x).max()) <= threat.eps + 1e-5
            with torch.no_grad():
                pred = std_model(res.x_adv).argmax(dim=1)
            assert torch.equal(res.success, pred != y)
            assert 0.2 < res.success.float().mean() < 1.0, (threat, attack.name)


def test_fab_t_on_at_model_points_valid(at_model, mnist_test):
    x, y = mnist_test[0][:20], mnist_test[1][:20]
    threat = rl.LpBall("linf", 0.3)
    res = FAB(threat, n_target_classes=2, steps=30)(at_model, x, y)
    assert float(threat.distance(res.x_adv, x).max()) <= 0.3 + 1e-5
    with torch.no_grad():
        assert torch.equal(res.success, at_model(res.x_adv).argmax(dim=1) != y)
    # Counted cost: a clean forward, then per target at most steps + 1 forward and backward
    # passes, and one projected check per point at the end.
    assert res.backward_calls <= 20 * 2 * (30 + 1)
    assert res.forward_calls <= 20 + res.backward_calls + 20


def test_minimal_mode_reports_inf_when_nothing_found(std_model, pts):
    x, y = pts
    threat = rl.LpBall("l2", 1.0)
    res = DeepFool(threat, minimal=True, steps=1)(std_model, x, y)
    assert (~res.success).any()
    assert bool(torch.isinf(res.distance[~res.success]).all())
    assert torch.equal(res.x_adv[~res.success], x[~res.success])


def test_bounded_deepfool_and_cw_inside_ball(std_model, pts):
    x, y = pts
    threat = rl.LpBall("l2", 1.5)
    for attack in (DeepFool(threat), CarliniWagner(threat, binary_search_steps=3, steps=30)):
        res = attack(std_model, x, y)
        assert float(threat.distance(res.x_adv, x).max()) <= 1.5 + 1e-5
        with torch.no_grad():
            assert torch.equal(res.success, std_model(res.x_adv).argmax(dim=1) != y)
        assert res.success.any()


def test_counted_calls_deepfool(std_model, pts):
    x, y = pts
    res = DeepFool(rl.LpBall("l2", 1.0), steps=10, candidates=4)(std_model, x, y)
    # One clean forward, at most steps + 1 linearisations (4 backward each), one final check.
    assert res.forward_calls <= 30 * (1 + 11 + 1)
    assert res.backward_calls <= 30 * 11 * 4
    assert res.backward_calls % 4 == 0


def test_targeted_cw_and_fab(std_model, pts):
    x, y = pts
    target = (y + 1) % 10
    threat = rl.LpBall("l2", 3.0)
    # C&W at its default budget on 10 points; FAB with 30 steps on 30.
    for attack, n in ((CarliniWagner(threat), 10), (FAB(threat, steps=30), 30)):
        xs, ys, ts = x[:n], y[:n], target[:n]
        res = attack(std_model, xs, ys, target=ts)
        with torch.no_grad():
            pred = std_model(res.x_adv).argmax(dim=1)
        assert torch.equal(res.success, pred == ts)
        assert float(threat.distance(res.x_adv, xs).max()) <= 3.0 + 1e-5
        assert res.success.float().mean() > 0.5, attack.name


def test_curve_from_minimal_distances(std_model, pts):
    x, y = pts
    threat = rl.LpBall("l2", 1.0)
    d_df = minimal_distances(std_model, x, y, DeepFool(threat, minimal=True))
    d_fab = minimal_distances(std_model, x, y, FAB(threat, n_target_classes=2, minimal=True, steps=20))
    d = combine(d_df, d_fab)
    assert bool((d <= d_df).all() and (d <= d_fab).all())
    eps = [0.0, 0.5, 1.0, 1.5, 2.0, 100.0]
    curve = robust_accuracy_curve(d, eps)
    with torch.no_grad():
        clean = (std_model(x).argmax(dim=1) == y).double().mean()
    assert math.isclose(float(curve[0]), float(clean))
    assert bool((curve[1:] <= curve[:-1]).all())
    assert float(curve[-1]) == float(torch.isinf(d).double().mean())
    # The curve at eps agrees with the bounded check of the same points: every point with
    # distance <= 1.0 has an adversarial point inside the L2 ball of radius 1.0.
    assert float(curve[2]) == float((d > 1.0).double().mean())


def test_min_norm_box_step_reaches_the_hyperplane_in_the_box():
    torch.manual_seed(0)
    p = torch.rand(50, 20, dtype=torch.float64)
    w = torch.randn(50, 20, dtype=torch.float64)
    c = 0.3 * torch.randn(50, dtype=torch.float64)
    for norm in ("linf", "l2", "l1"):
        d = min_norm_box_step(p, w, c, norm)
        assert float((p + d).min()) >= -1e-12 and float((p + d).max()) <= 1 + 1e-12
        assert torch.allclose((w * d).sum(dim=1), c, atol=1e-9)
    # Linf optimality (the KKT form): every coordinate moves by min(tau, room to the box) along
    # sign(c * w), with one tau per point, and no smaller tau reaches the hyperplane.
    d = min_norm_box_step(p, w, c, "linf")
    ws = w * torch.where(c < 0, -1.0, 1.0).to(w.dtype)[:, None]
    cap = torch.where(ws > 0, 1 - p, p)
    tau = d.abs().amax(dim=1, keepdim=True)
    assert torch.allclose(d.abs(), torch.minimum(tau, cap), atol=1e-9)
    assert bool(((d == 0) | (d.sign() == ws.sign())).all())
    short = (ws.abs() * torch.minimum(tau * (1 - 1e-6), cap)).sum(dim=1)
    assert bool((short < c.abs()).all())


@pytest.mark.parametrize("make,name", [
    (lambda: CarliniWagner(rl.LpBall("linf", 0.1)), "threat"),
    (lambda: CarliniWagner(rl.LpBall("l2", 1.0), steps=0), "steps"),
    (lambda: CarliniWagner(rl.LpBall("l2", 1.0), initial_c=0.0), "initial_c"),
    (lambda: CarliniWagner(rl.LpBall("l2", 1.0), lr=-1.0), "lr"),
    (lambda: DeepFool(rl.LpBall("l1", 1.0)), "threat"),
    (lambda: DeepFool(rl.LpBall("l2", 1.0), overshoot=-0.1), "overshoot"),
    (lambda: DeepFool(rl.LpBall("l2", 1.0), candidates=0), "candidates"),
    (lambda: FAB(rl.LpBall("l2", 1.0), beta=0.0), "beta"),
    (lambda: FAB(rl.LpBall("l2", 1.0), eta=0.5), "eta"),
    (lambda: FAB(rl.LpBall("l2", 1.0), alpha_max=2.0), "alpha_max"),
    (lambda: FAB(rl.LpBall("l2", 1.0), n_target_classes=0), "n_target_classes"),
])
def test_bad_arguments_name_the_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_deepfool_rejects_target_and_bad_inputs(std_model, pts):
    x, y = pts
    with pytest.raises(ValueError, match="target"):
        DeepFool(rl.LpBall("l2", 1.0))(std_model, x, y, target=y)
    with pytest.raises(ValueError, match="x"):
        FAB(rl.LpBall("l2", 1.0))(std_model, x - 1, y)
    with pytest.raises(ValueError, match="attack"):
        minimal_distances(std_model, x, y, FAB(rl.LpBall("l2", 1.0)))
    with pytest.raises(ValueError, match="distance"):
        robust_accuracy_curve(torch.tensor([float("nan")]), [0.1])


def test_model_state_restored_fab_cw_deepfool():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    t = rl.LpBall("l2", 1.0)
    for attack in (FAB(t, steps=3), CarliniWagner(t, steps=3, binary_search_steps=2), DeepFool(t, steps=3)):
        with pytest.warns(UserWarning, match="training mode"):
            attack(model, x, y)
        assert model.training
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), k
        assert all(p.requires_grad and p.grad is None for p in model.parameters())
