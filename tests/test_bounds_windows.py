"""Windowed (patch) back-substitution and alpha-CROWN on every layer: same bounds as dense rows,
sound, and alpha-CROWN's intermediate slopes tighten the output bound."""
from __future__ import annotations

import pytest
import torch
from bound_samplers import ball_points, spec_values
from torch import nn

import robustlab.certify.crown as crown_mod
from robustlab.certify import Residual, bounds, margin_spec
from robustlab.models.layers import Normalize
from robustlab.threats import LpBall


def wide_residual(seed: int) -> nn.Module:
    """14x14 inputs, so windows stay smaller than their maps for several layers (strided conv,
    padding at the borders, a residual add of windows of different sizes, AvgPool)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        Normalize((0.3,), (0.4,)), nn.Conv2d(1, 4, 4, stride=2, padding=1), nn.ReLU(),
        Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                               nn.Conv2d(4, 4, 3, padding=1))),
        nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(6 * 3 * 3, 16), nn.ReLU(), nn.Linear(16, 5))
    bn = net[3].body[1]
    bn.running_mean.uniform_(-0.3, 0.3)
    bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize("norm,eps", [("linf", 0.03), ("l2", 0.3)])
def test_windows_give_the_dense_bounds(monkeypatch, norm, eps):
    net = wide_residual(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 14, 14, generator=gen)
    spec = margin_spec(torch.tensor([0, 3, 4]), 5)
    ball = LpBall(norm, eps)
    win = bounds(net, x, ball, "crown", spec)
    monkeypatch.setattr(crown_mod, "WINDOWS", False)
    dense = bounds(net, x, ball, "crown", spec)
    torch.testing.assert_close(win, dense, rtol=1e-5, atol=1e-5)
    # and the window path actually ran: intermediate neurons were unstable
    lo, hi = bounds(net, x, ball, "ibp", spec)
    assert bool((win[0] > lo + 1e-4).any())


def test_windowed_alpha_crown_is_sound_and_tighter_than_crown():
    net = wide_residual(1)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 14, 14, generator=gen)
    spec = margin_spec(torch.tensor([1, 2]), 5)
    ball = LpBall("linf", 0.05)
    with torch.no_grad():
        cl, cu = bounds(net, x, ball, "crown", spec)
        al, au = bounds(net, x, ball, "alpha-crown", spec, alpha_steps=10)
    assert bool((al >= cl - 1e-5).all() and (au <= cu + 1e-5).all())
    assert float((au - al).mean()) < 0.97 * float((cu - cl).mean())
    pts = ball_points(x, ball, 1500, gen)
    vals = spec_values(net, pts, spec)
    assert bool((vals >= al[:, None] - 1e-4).all() and (vals <= au[:, None] + 1e-4).all())


def test_alpha_crown_optimises_intermediate_layers():
    """With the intermediate layers' slopes left at CROWN's, alpha-CROWN is looser."""
    net = wide_residual(2)
    x = torch.rand(2, 1, 14, 14, generator=torch.Generator().manual_seed(2))
    spec = margin_spec(torch.tensor([0, 1]), 5)
    ball = LpBall("linf", 0.05)
    with torch.no_grad():
        full = bounds(net, x, ball, "alpha-crown", spec, alpha_steps=10, upper=False)[0]
        only = bounds(net, x, ball, "alpha-crown", spec, alpha_steps=10, upper=False, alpha_intermediate=False)[0]
        crown = bounds(net, x, ball, "crown", spec, upper=False)[0]
    assert bool((only >= crown - 1e-5).all()) and bool((full >= only - 1e-5).all())
    assert float((full - only).mean()) > 1e-3
