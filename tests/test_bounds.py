"""Bound propagation is sound: no sampled point of the threat set leaves the bounds."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from bound_samplers import ball_points, pgd_points, small_net as _net, spec_values
from robustlab.certify import CROWN, IBP, AlphaCROWN, bounds, margin_spec
from robustlab.threats import LpBall

TOL = 1e-4  # float32 rounding on logits of size ~10


def _inside(lower, upper, vals) -> bool:
    slack = TOL * (1 + vals.abs())
    return bool((vals >= lower[:, None] - slack).all() and (vals <= upper[:, None] + slack).all())


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["mlp", "cnn", "residual"]), seed=st.integers(0, 10 ** 6),
       norm=st.sampled_from(["linf", "l2"]), eps=st.floats(0.01, 0.3),
       method=st.sampled_from(["ibp", "crown-ibp", "crown", "alpha-crown"]))
def test_random_nets_sampled_points_stay_inside_bounds(kind, seed, norm, eps, method):
    net = _net(kind, seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 1, 6, 6, generator=gen)
    ball = LpBall(norm, eps if norm == "linf" else 4 * eps)
    spec = torch.randn(3, 4, 5, generator=gen)
    lower, upper = bounds(net, x, ball, method, spec, alpha_steps=5)
    assert lower.shape == upper.shape == (3, 4) and bool((lower <= upper + 1e-6).all())
    pts = torch.cat([ball_points(x, ball, 1500, gen), pgd_points(net, x, ball, spec, 10, gen)], 1)
    assert _inside(lower, upper, spec_values(net, pts, spec))


@settings(max_examples=8, deadline=None)
@given(kind=st.sampled_from(["mlp", "cnn", "residual"]), seed=st.integers(0, 10 ** 6), eps=st.floats(0.01, 0.2))
def test_tighter_methods_are_never_looser(kind, seed, eps):
    """alpha-CROWN's certificate >= CROWN's >= IBP's, sample by sample."""
    net = _net(kind, seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(6, 1, 6, 6, generator=gen)
    y = torch.randint(0, 5, (6,), generator=gen)
    ball = LpBall("linf", eps)
    ibp, crown, alpha = (c(net, x, y, ball).bound for c in (IBP(), CROWN(), AlphaCROWN(steps=5)))
    assert bool((crown >= ibp).all()) and bool((alpha >= crown).all())


def test_bounds_of_the_logits_without_spec_and_with_shared_spec():
    net = _net("cnn", 1)
    x = torch.rand(4, 1, 6, 6)
    ball = LpBall("linf", 0.05)
    lo, hi = bounds(net, x, ball, "crown")
    assert lo.shape == (4, 5)
    spec = torch.eye(5)[:2] - torch.eye(5)[2:4]
    l2, h2 = bounds(net, x, ball, "crown", spec)
    pts = ball_points(x, ball, 2000, torch.Generator().manual_seed(0))
    assert _inside(lo, hi, spec_values(net, pts, torch.eye(5).expand(4, 5, 5)))
    assert _inside(l2, h2, spec_values(net, pts, spec.expand(4, 2, 5)))


def test_chunked_back_substitution_gives_the_same_bounds():
    net = _net("residual", 3)
    x = torch.rand(3, 1, 6, 6)
    ball = LpBall("linf", 0.05)
    big = bounds(net, x, ball, "crown")
    small = bounds(net, x, ball, "crown", max_elements=20000)
    torch.testing.assert_close(big, small, rtol=1e-6, atol=1e-6)


def test_first_unsupported_layer_is_named():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Tanh())
    with pytest.raises(ValueError, match=r"'2' \(MaxPool2d\)"):
        bounds(net, torch.rand(1, 1, 8, 8), LpBall("linf", 0.1))
    with pytest.raises(ValueError, match="method"):
        bounds(_net("mlp", 0), torch.rand(1, 1, 6, 6), LpBall("linf", 0.1), method="lp")


def test_margin_spec_rows():
    spec = margin_spec(torch.tensor([2, 0]), 4)
    assert spec.shape == (2, 3, 4)
    assert spec[0].tolist() == [[-1, 0, 1, 0], [0, -1, 1, 0], [0, 0, 1, -1]]
    assert spec[1].tolist() == [[1, -1, 0, 0], [1, 0, -1, 0], [1, 0, 0, -1]]
