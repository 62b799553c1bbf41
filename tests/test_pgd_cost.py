"""PGD and FGSM cost, counted (never timed): exactly k backward and k + 1 forward passes per
sample per restart on points that stay robust, fewer with early stop, and the counts match what
the model really computed.

The model is tiny and its prediction never changes: class 0 leads by a margin of 10 and the
input moves the logits by at most 1e-2, so points labelled 0 are never broken and points
labelled 1 are broken from the start, whatever the attack does. The model also counts the
samples it sees in forward and in backward, so the attack's reported counts are checked against
the work actually done.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlab.attacks.gradient import FGSM, PGD
from robustlab.threats import LpBall


class _CountBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, model):  # type: ignore[override]
        ctx.model = model
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        ctx.model.seen_backward += g.shape[0]
        return g, None


class FixedPrediction(nn.Module):
    """Logits (N, 10): class 0 at 10, the rest at 0, plus 1e-2 * tanh of a linear map of x."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.lin = nn.Linear(16, 10)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(10, 16, generator=g))
        self.register_buffer("base", torch.tensor([10.0] + [0.0] * 9))
        self.seen_forward = 0
        self.seen_backward = 0
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_forward += x.shape[0]
        if x.requires_grad:
            x = _CountBackward.apply(x, self)
        return self.base + 1e-2 * torch.tanh(self.lin(x.flatten(1)))


N, K = 12, 7
T = LpBall("linf", 0.3)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(N, 1, 4, 4, generator=g)
    robust = torch.zeros(N, dtype=torch.int64)  # predicted 0: never broken
    return x, robust


def _check_honest(model: FixedPrediction, res) -> None:
    # prepare() probes the output shape on two samples, outside the attack's budget.
    assert model.seen_forward - 2 == res.forward_calls
    assert model.seen_backward == res.backward_calls


@pytest.mark.parametrize("early_stop", [True, False])
@pytest.mark.parametrize("restarts", [1, 3])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_costs_k_backward_k_plus_1_forward_on_robust_points(data, early_stop, restarts, norm):
    x, y = data
    model = FixedPrediction()
    threat = LpBall(norm, 0.3)
    res = PGD(threat, steps=K, restarts=restarts, early_stop=early_stop, seed=0)(model, x, y)
    assert not res.success.any()
    assert res.backward_calls == N * K * restarts
    assert res.forward_calls == N * (K + 1) * restarts
    _check_honest(model, res)


def test_pgd_targeted_cost_on_robust_points(data):
    x, y = data
    model = FixedPrediction()
    res = PGD(T, steps=K, seed=0)(model, x, y, target=torch.full_like(y, 3))
    assert not res.success.any()
    assert (res.backward_calls, res.forward_calls) == (N * K, N * (K + 1))
    _check_honest(model, res)


def test_early_stop_spends_exactly_one_step_on_points_broken_at_once(data):
    x, _ = data
    y = torch.tensor([0, 1] * (N // 2))  # odd positions are misclassified from the start
    n_broken, n_robust = N // 2, N - N // 2
    model = FixedPrediction()
    res = PGD(T, steps=K, restarts=2, seed=0)(model, x, y)
    assert torch.equal(res.success, y == 1)
    # Broken points: one forward+backward, then they leave the batch (and the second restart).
    assert res.backward_calls == n_broken * 1 + n_robust * K * 2
    assert res.forward_calls == n_broken * 1 + n_robust * (K + 1) * 2
    assert res.backward_calls < N * K * 2
    _check_honest(model, res)

    model = FixedPrediction()
    full = PGD(T, steps=K, restarts=2, early_stop=False, seed=0)(model, x, y)
    assert torch.equal(full.success, y == 1)
    assert (full.backward_calls, full.forward_calls) == (N * K * 2, N * (K + 1) * 2)
    _check_honest(model, full)


def test_fgsm_costs_one_backward_and_one_extra_forward(data):
    x, y = data
    model = FixedPrediction()
    res = FGSM(T)(model, x, y)
    # One forward+backward at x, one forward at the returned point (its success).
    assert res.backward_calls == N
    assert res.forward_calls == 2 * N
    _check_honest(model, res)


def test_fgsm_on_points_broken_at_once_skips_the_extra_forward(data):
    x, _ = data
    model = FixedPrediction()
    res = FGSM(T)(model, x, torch.ones(N, dtype=torch.int64))
    assert res.success.all()
    assert (res.backward_calls, res.forward_calls) == (N, N)
    _check_honest(model, res)


def test_attack_leaves_no_parameter_gradients(data):
    x, y = data
    model = FixedPrediction()
    PGD(T, steps=K, seed=0)(model, x, y)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
