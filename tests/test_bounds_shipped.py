"""Bounds on the shipped certified model are sound, and its certificates survive attacks."""
from __future__ import annotations

import pytest
import torch
from bound_samplers import ball_points, pgd_points, spec_values

import robustlab as rl
from robustlab.attacks.gradient import PGD
from robustlab.certify import CROWN, IBP, bounds, margin_spec


@pytest.fixture(scope="module")
def crownibp():
    return rl.models.load("mnist-cnn-crownibp")


@pytest.mark.slow
def test_sampled_points_stay_inside_the_crown_bounds(crownibp, mnist_test):
    x, y = mnist_test[0][:4], mnist_test[1][:4]
    ball = rl.LpBall("linf", 0.3)
    spec = margin_spec(y, 10)
    lower, upper = bounds(crownibp, x, ball, "crown", spec)
    gen = torch.Generator().manual_seed(0)
    pts = torch.cat([ball_points(x, ball, 2500, gen), pgd_points(crownibp, x, ball, spec, 20, gen)], 1)
    vals = spec_values(crownibp, pts, spec)
    slack = 1e-4 * (1 + vals.abs())
    assert bool((vals >= lower[:, None] - slack).all() and (vals <= upper[:, None] + slack).all())
    # the bounds are not vacuous: the sampled extremes come close to them
    assert float((vals.amin(1) - lower).mean()) < 0.5 * float((upper - lower).mean())


@pytest.mark.slow
def test_certified_points_are_not_broken_and_crown_is_no_looser_than_ibp(crownibp, mnist_test):
    x, y = mnist_test[0][:24], mnist_test[1][:24]
    ball = rl.LpBall("linf", 0.3)
    ibp, crown = IBP()(crownibp, x, y, ball), CROWN()(crownibp, x, y, ball)
    assert bool((crown.bound >= ibp.bound).all())
    assert int(crown.certified.sum()) >= 12  # the model certifies most points at 0.3
    broken = PGD(ball, steps=40, restarts=2)(crownibp, x, y).success
    assert not bool((broken & crown.certified).any())


@pytest.mark.slow
def test_the_linf_01_model_certifies_most_points_and_they_survive_pgd(mnist_test):
    """mnist-cnn-crownibp-0.1: 96.2% IBP- and 96.3% CROWN-certified on the first 1000 test points
    (card; the issue's goal is 95%, the previous weights certified 90.5% / 90.6%). IBP on all 1000
    points (a few seconds) must reach 95%; CROWN on the first 40 at least 37 points, none broken
    by PGD."""
    model = rl.models.load("mnist-cnn-crownibp-0.1")
    ball = rl.LpBall("linf", 0.1)
    ibp = IBP(batch_size=1000)(model, mnist_test[0][:1000], mnist_test[1][:1000], ball)
    assert float(ibp.certified.float().mean()) >= 0.95
    x, y = mnist_test[0][:40], mnist_test[1][:40]
    crown = CROWN()(model, x, y, ball)
    assert bool((crown.bound >= ibp.bound[:40]).all())
    assert int(crown.certified.sum()) >= 37
    broken = PGD(ball, steps=40, restarts=1)(model, x, y).success
    assert not bool((broken & crown.certified).any())
