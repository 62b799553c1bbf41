"""LpBall geometry: projection, random starts and steepest directions stay valid."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustlab.threats import DIST_TOL, LpBall, project_l1_ball

norms = st.sampled_from(["linf", "l2", "l1"])
shapes = st.sampled_from([(1, 4), (3, 1, 5, 5), (2, 3, 4, 4), (5, 17)])


@settings(max_examples=60, deadline=None)
@given(norm=norms, eps=st.floats(0.0, 5.0), shape=shapes, seed=st.integers(0, 10_000),
       scale=st.floats(0.01, 10.0))
def test_project_lands_in_ball_and_box(norm, eps, shape, seed, scale):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    x_adv = x + scale * torch.randn(shape, generator=g)
    ball = LpBall(norm, eps)
    p = ball.project(x_adv, x)
    assert p.min() >= 0 and p.max() <= 1
    assert bool((ball.distance(p, x) <= eps + DIST_TOL).all())


@settings(max_examples=40, deadline=None)
@given(norm=norms, eps=st.floats(0.0, 3.0), shape=shapes, seed=st.integers(0, 10_000))
def test_random_start_in_ball_and_box(norm, eps, shape, seed):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    ball = LpBall(norm, eps)
    r = ball.random_start(x, torch.Generator().manual_seed(seed + 1))
    assert r.shape == x.shape
    assert r.min() >= 0 and r.max() <= 1
    assert bool((ball.distance(r, x) <= eps + DIST_TOL).all())


@settings(max_examples=40, deadline=None)
@given(eps=st.floats(0.01, 4.0), seed=st.integers(0, 10_000))
def test_l1_projection_is_the_closest_point(eps, seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(1, 12, generator=g, dtype=torch.float64) * 2
    p = project_l1_ball(v, eps)
    assert float(p.abs().sum()) <= eps + 1e-9
    if float(v.abs().sum()) > eps:
        assert math.isclose(float(p.abs().sum()), eps, rel_tol=1e-9)
    # No random point of the ball is closer to v than its projection.
    cand = torch.randn(2000, 12, generator=g, dtype=torch.float64)
    cand = cand / cand.abs().sum(1, keepdim=True) * eps * torch.rand(2000, 1, generator=g, dtype=torch.float64)
    assert float((cand - v).norm(dim=1).min()) >= float((p - v).norm()) - 1e-9


def test_project_identity_inside_ball():
    x = torch.rand(4, 10)
    ball = LpBall("l2", 1.0)
    inside = x + 0.01 * torch.randn(4, 10)
    inside = inside.clamp(0, 1)
    assert torch.equal(ball.project(inside, x), inside)


def test_steepest_direction_has_unit_norm():
    g = torch.randn(6, 1, 8, 8)
    assert torch.equal(LpBall("linf", 0.1).steepest_direction(g), g.sign())
    d2 = LpBall("l2", 1.0).steepest_direction(g)
    assert torch.allclose(d2.flatten(1).norm(dim=1), torch.ones(6))
    d1 = LpBall("l1", 5.0).steepest_direction(g, sparsity=0.9)
    assert torch.allclose(d1.flatten(1).abs().sum(dim=1), torch.ones(6))
    assert int((d1[0] != 0).sum()) == round(0.1 * 64)


@pytest.mark.parametrize("spec,norm,eps", [("linf:0.3", "linf", 0.3), ("L2:1.5", "l2", 1.5),
                                           ("linf:8/255", "linf", 8 / 255)])
def test_parse(spec, norm, eps):
    b = LpBall.parse(spec)
    assert b.norm == norm and math.isclose(b.eps, eps)


@pytest.mark.parametrize("args,match", [(("l3", 0.1), "norm"), (("linf", -0.1), "eps"),
                                        (("linf", float("nan")), "eps"), (("l2", float("inf")), "eps")])
def test_bad_threat(args, match):
    with pytest.raises(ValueError, match=match):
        LpBall(*args)


def test_bad_threat_type_and_spec():
    with pytest.raises(TypeError, match="eps"):
        LpBall("linf", "0.3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threat"):
        LpBall.parse("linf=0.3")
