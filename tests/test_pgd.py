"""FGSM and PGD on the shipped models: strength, validity, determinism, model state."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import robustlab as rl
from robustlab.attacks import FGSM, PGD
from robustlab.threats import DIST_TOL


def test_pgd_breaks_standard_model(std_model, mnist_test, linf03):
    x, y = mnist_test[0][:300], mnist_test[1][:300]
    res = PGD(linf03, steps=40, seed=0)(std_model, x, y)
    robust = 1 - res.success_rate
    assert robust < 0.05
    # The claimed successes are real: the model misclassifies the returned points.
    with torch.no_grad():
        pred = std_model(res.x_adv).argmax(1)
    assert torch.equal(pred != y, res.success)
    assert bool((res.distance <= 0.3 + DIST_TOL).all())
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


def test_pgd_does_not_break_adversarially_trained_model(at_model, mnist_test, linf03):
    x, y = mnist_test[0][:300], mnist_test[1][:300]
    res = PGD(linf03, steps=40, restarts=2, seed=0)(at_model, x, y)
    assert 1 - res.success_rate > 0.80
    # ...while a much larger ball does break it: the robustness is not gradient masking.
    big = PGD(rl.LpBall("linf", 0.5), steps=40, seed=0)(at_model, x[:100], y[:100])
    assert big.success_rate > 0.9


def test_pgd_stronger_than_fgsm(at_model, mnist_test, linf03):
    x, y = mnist_test[0][:300], mnist_test[1][:300]
    fgsm = FGSM(linf03)(at_model, x, y).success_rate
    pgd = PGD(linf03, steps=40, seed=0)(at_model, x, y).success_rate
    assert pgd >= fgsm


@pytest.mark.parametrize("norm,eps,max_robust", [("l2", 2.5, 0.15), ("l1", 15.0, 0.25)])
def test_pgd_l2_l1_break_standard_model(std_model, mnist_test, norm, eps, max_robust):
    x, y = mnist_test[0][:200], mnist_test[1][:200]
    threat = rl.LpBall(norm, eps)
    res = PGD(threat, steps=50, seed=0)(std_model, x, y)
    assert 1 - res.success_rate < max_robust
    assert bool((threat.distance(res.x_adv, x) <= eps * (1 + 1e-5) + DIST_TOL).all())
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


def test_targeted_pgd_reaches_target(std_model, mnist_test, linf03):
    x, y = mnist_test[0][:100], mnist_test[1][:100]
    target = (y + 1) % 10
    res = PGD(linf03, steps=40, seed=0)(std_model, x, y, target=target)
    with torch.no_grad():
        pred = std_model(res.x_adv).argmax(1)
    assert res.success_rate > 0.9
    assert torch.equal(res.success, pred == target)


def test_same_seed_same_x_adv_and_other_seed_differs(std_model, mnist_test, linf03):
    x, y = mnist_test[0][:50], mnist_test[1][:50]
    a = PGD(linf03, steps=5, seed=3)(std_model, x, y)
    b = PGD(linf03, steps=5, seed=3)(std_model, x, y)
    c = PGD(linf03, steps=5, seed=4)(std_model, x, y)
    assert torch.equal(a.x_adv, b.x_adv)
    assert not torch.equal(a.x_adv, c.x_adv)


def test_early_stop_spends_less(std_model, mnist_test, linf03):
    x, y = mnist_test[0][:100], mnist_test[1][:100]
    es = PGD(linf03, steps=20, seed=0)(std_model, x, y)
    full = PGD(linf03, steps=20, seed=0, early_stop=False)(std_model, x, y)
    assert es.backward_calls < full.backward_calls == 100 * 20
    assert full.forward_calls == 100 * 21
    assert es.success_rate == pytest.approx(full.success_rate, abs=0.03)


class _BNDropNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))


@pytest.mark.parametrize("make", [lambda t: PGD(t, steps=3, restarts=2), lambda t: FGSM(t)])
def test_attack_restores_model_state(make, mnist_test, linf03):
    net = _BNDropNet()
    net.train()
    net.conv.weight.requires_grad_(False)  # a mix of frozen and trainable parameters
    net.fc.weight.grad = torch.full_like(net.fc.weight, 7.0)  # a user's pending gradient
    with torch.no_grad():  # move the BN statistics away from their defaults
        net.bn.running_mean.uniform_()
        net.bn.num_batches_tracked.fill_(5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = mnist_test[0][:20], mnist_test[1][:20]
    with pytest.warns(UserWarning, match="training mode"):
        make(linf03)(net, x, y)
    assert net.training and net.bn.training and net.drop.training
    assert [p.requires_grad for p in net.parameters()] == [False, True, True, True, True, True]
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(net.fc.weight.grad, torch.full_like(net.fc.weight, 7.0))
    assert all(p.grad is None for n, p in net.named_parameters() if n != "fc.weight")


def test_attack_on_plain_callable(std_model, mnist_test, linf03):
    x, y = mnist_test[0][:50], mnist_test[1][:50]
    res = PGD(linf03, steps=10)(lambda t: std_model(t), x, y)
    assert res.success_rate > 0.8
