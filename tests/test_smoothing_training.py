"""The consistency-regularised Gaussian augmentation recipe (Jeong & Shin 2020): its terms
against a direct computation, and the argument checks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlab.defenses.noise_training import GaussianAugmentation, GaussianConsistency

torch.set_num_threads(1)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 5))


def test_consistency_loss_matches_a_direct_computation():
    model = _model()
    x = torch.rand(3, 1, 4, 4)
    y = torch.tensor([0, 2, 4])
    recipe = GaussianConsistency(0.5, copies=3, weight=7.0, entropy=0.3)
    got = recipe.loss(model, x, y, torch.Generator().manual_seed(1), 0.0)
    # the same noise, drawn the same way, then every term by hand, point by point
    noise = torch.randn((9, 1, 4, 4), generator=torch.Generator().manual_seed(1))
    ce, kl, ent = 0.0, 0.0, 0.0
    for i in range(3):
        p = [F.softmax(model(x[i:i + 1] + 0.5 * noise[3 * i + j:3 * i + j + 1]), dim=1)[0] for j in range(3)]
        avg = sum(p) / 3
        ce += sum(-q[y[i]].log() for q in p) / 9
        kl += sum((avg * (avg.log() - q.log())).sum() for q in p) / 9
        ent += -(avg * avg.log()).sum() / 3
    assert float(got.detach()) == pytest.approx(float((ce + 7.0 * kl + 0.3 * ent).detach()), rel=1e-5)
    got.backward()
    assert model[1].weight.grad is not None and float(model[1].weight.grad.abs().sum()) > 0


@torch.no_grad()
def test_consistency_terms_vanish_for_a_noise_blind_model_and_reduce_to_augmentation():
    x = torch.rand(4, 1, 4, 4)
    y = torch.tensor([1, 1, 3, 0])

    class Blind(nn.Module):  # ignores its input: every copy gets the same softmax
        def __init__(self):
            super().__init__()
            self.z = nn.Parameter(torch.tensor([0.1, 0.5, -0.2, 0.3, 0.0]))

        def forward(self, v):
            return self.z.expand(v.shape[0], 5)

    blind = Blind()
    ce = F.cross_entropy(blind(x), y)
    ent = -(F.softmax(blind.z, 0) * F.log_softmax(blind.z, 0)).sum()
    got = GaussianConsistency(0.25, weight=100.0, entropy=0.0).loss(blind, x, y, torch.Generator().manual_seed(0), 0)
    assert float(got) == pytest.approx(float(ce), rel=1e-6)  # KL is 0 whatever its weight
    got = GaussianConsistency(0.25, weight=0.0, entropy=2.0).loss(blind, x, y, torch.Generator().manual_seed(0), 0)
    assert float(got) == pytest.approx(float(ce + 2 * ent), rel=1e-6)
    # with both weights 0 it is Gaussian augmentation with the same copies and noise
    model = _model()
    a = GaussianConsistency(0.25, copies=2, weight=0.0, entropy=0.0).loss(model, x, y, torch.Generator().manual_seed(5), 0)
    b = GaussianAugmentation(0.25, copies=2).loss(model, x, y, torch.Generator().manual_seed(5), 0)
    assert float(a) == pytest.approx(float(b), rel=1e-6)
    # a model that does react to the noise pays a positive KL
    kl_only = GaussianConsistency(0.25, weight=1.0, entropy=0.0)
    assert float(kl_only.loss(model, x, y, torch.Generator().manual_seed(5), 0)) > float(a) + 1e-6


@pytest.mark.parametrize("kwargs,name", [({"sigma": 0.0}, "sigma"), ({"sigma": 0.5, "copies": 1}, "copies"),
                                         ({"sigma": 0.5, "weight": -1.0}, "weight"),
                                         ({"sigma": 0.5, "entropy": -0.1}, "entropy")])
def test_consistency_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GaussianConsistency(**kwargs)


def test_consistency_spec_names_every_setting():
    assert GaussianConsistency(0.5).spec() == "gaussian-consistency:sigma=0.5,copies=2,weight=10.0,entropy=0.5"
