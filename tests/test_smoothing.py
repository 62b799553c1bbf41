"""Randomized smoothing: the statistics against independent references, CERTIFY on base models
whose true smoothed probabilities are known in closed form, abstention, reproducibility, and the
shipped models (certified points are never broken by SmoothAdv-style PGD)."""
from __future__ import annotations

from statistics import NormalDist

import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import binom, binomtest
from torch import nn

import robustlab as rl
from robustlab.certify.smoothing import (ABSTAIN, REJECT_SCORE, Smoothed, Smoothing, binomial_pvalue,
                                         lower_confidence_bound, radius_from_pa)
from robustlab.threats import LpBall

torch.set_num_threads(1)

# (count, n, alpha) -> statsmodels.stats.proportion.proportion_confint(count, n, alpha=2 * alpha,
# method="beta")[0], the call in Cohen et al.'s certify code (statsmodels 0.15.0, computed once).
STATSMODELS_LOWER = {
    (1, 100_000, 0.001): 1.000500328578529e-08,
    (50, 100, 0.001): 0.34479800642531777,
    (99, 100, 0.001): 0.9113731112960424,
    (100, 100, 0.001): 0.933254300796991,
    (99_990, 100_000, 0.001): 0.9997586773435911,
    (100_000, 100_000, 0.001): 0.9999309248330094,
    (700, 1000, 0.05): 0.6752463872806512,
}


def clopper_pearson_by_root(k: int, n: int, alpha: float) -> float:
    """The p at which P(X >= k | n, p) = alpha: the one-sided lower bound by its definition."""
    if k == 0:
        return 0.0
    return brentq(lambda p: binom.sf(k - 1, n, p) - alpha, 1e-15, 1 - 1e-15, xtol=1e-15, rtol=1e-13)


@pytest.mark.parametrize("key", sorted(STATSMODELS_LOWER))
def test_clopper_pearson_matches_statsmodels_and_its_definition(key):
    k, n, alpha = key
    got = float(lower_confidence_bound(torch.tensor([k]), n, alpha)[0])
    assert got == pytest.approx(STATSMODELS_LOWER[key], rel=1e-9, abs=1e-15)
    assert got == pytest.approx(clopper_pearson_by_root(k, n, alpha), rel=1e-7, abs=1e-14)


def test_clopper_pearson_zero_count_and_monotone():
    lo = lower_confidence_bound(torch.tensor([0, 10, 500, 990]), 1000, 0.001)
    assert lo[0] == 0 and bool((lo.diff() > 0).all())


def test_radius_is_sigma_times_inverse_normal_cdf():
    pa = torch.tensor([0.4, 0.5, 0.6, 0.9, 0.999, 0.9999309248330094], dtype=torch.float64)
    r = radius_from_pa(pa, 0.25)
    ref = [0.25 * NormalDist().inv_cdf(p) if p > 0.5 else 0.0 for p in pa.tolist()]
    assert r.tolist() == pytest.approx(ref, rel=1e-9, abs=1e-12)
    # Cohen et al. Table: sigma 0.25, N = 100k, alpha 0.001, all samples right -> radius ~0.955
    assert float(radius_from_pa(lower_confidence_bound(torch.tensor([100_000]), 100_000, 0.001), 0.25)) \
        == pytest.approx(0.9535, abs=1e-3)


@pytest.mark.parametrize("a,b", [(5, 3), (50, 50), (60, 40), (0, 3), (10, 0), (7, 8), (430, 370)])
def test_binomial_pvalue_matches_scipy_binomtest(a, b):
    assert float(binomial_pvalue(torch.tensor([a]), torch.tensor([b]))[0]) == pytest.approx(
        binomtest(a, a + b, 0.5).pvalue, rel=1e-12)


class Halfspace(nn.Module):
    """Class 1 where the first pixel exceeds t, else 0: P(class 1 at x + noise) = Phi((x0 - t)/sigma),
    and the exact L2 distance to the decision boundary is |x0 - t|."""

    def __init__(self, t: float = 0.5) -> None:
        super().__init__()
        self.t = t

    def forward(self, x):
        s = (x.flatten(1)[:, 0] - self.t) * 100
        return torch.stack([-s, s], dim=1)


def test_certify_is_sound_and_tight_on_a_halfspace():
    x0 = torch.tensor([0.60, 0.70, 0.45, 0.20])
    x = x0[:, None, None, None] * torch.ones(4, 1, 2, 2)
    g = Smoothed(Halfspace(), sigma=0.25, batch_size=5000, seed=3)
    pred, radius = g.certify(x, n0=100, n=20_000, alpha=0.001)
    assert pred.tolist() == [1, 1, 0, 0]
    dist = (x0 - 0.5).abs().double()
    # the true smoothed radius is the distance to the boundary; the certificate is below it
    # (with probability 1 - alpha) and within the Clopper-Pearson slack of it at n = 20k
    assert bool((radius < dist).all()), (radius, dist)
    assert bool((radius > dist - 0.04).all()), (radius, dist)


def test_abstains_on_a_coin_flip():
    x = torch.full((3, 1, 2, 2), 0.5)
    g = Smoothed(Halfspace(0.5), sigma=0.5, seed=0)
    assert g.predict(x, n=2000, alpha=0.001).tolist() == [ABSTAIN] * 3
    pred, radius = g.certify(x, n0=100, n=2000, alpha=0.001)
    assert pred.tolist() == [ABSTAIN] * 3 and radius.tolist() == [0.0] * 3
    scores = g(x)
    assert g.rejects and scores.shape == (3, 3) and scores.argmax(1).tolist() == [2, 2, 2]
    assert float(scores[0, 2]) == REJECT_SCORE


def test_forward_follows_reject_convention_and_predict():
    x = torch.tensor([0.9, 0.1, 0.52])[:, None, None, None].expand(3, 1, 2, 2).contiguous()
    g = Smoothed(Halfspace(0.5), sigma=0.25, n=500, alpha=0.001)
    scores = g(x)
    assert scores.shape == (3, 3)
    assert torch.allclose(scores[:, :2].sum(1), torch.ones(3))
    pred = g.predict(x, n=500, alpha=0.001)
    assert pred.tolist() == [1, 0, ABSTAIN]
    assert scores.argmax(1).tolist() == [1, 0, 2]


def test_seeded_noise_is_reproducible_and_seed_dependent():
    x = torch.full((2, 1, 2, 2), 0.55)
    a = Smoothed(Halfspace(), sigma=0.25, seed=7, batch_size=300)
    counts = a.sample_counts(x, 1000)
    assert torch.equal(counts, Smoothed(Halfspace(), sigma=0.25, seed=7, batch_size=300).sample_counts(x, 1000))
    assert torch.equal(counts, a.sample_counts(x, 1000))  # each call restarts the generator
    assert not torch.equal(counts, Smoothed(Halfspace(), sigma=0.25, seed=8).sample_counts(x, 1000))
    assert counts[0].sum() == 1000 and not torch.equal(counts[0], counts[1])  # fresh noise per point


def test_certifier_checks_and_result():
    x = torch.tensor([0.9, 0.1, 0.6])[:, None, None, None].expand(3, 1, 2, 2).contiguous()
    y = torch.tensor([1, 1, 1])
    res = Smoothing(sigma=0.25, n0=100, n=5000)(Halfspace(), x, y, LpBall("l2", 0.05))
    assert res.prediction.tolist() == [1, 0, 1]
    assert res.certified.tolist() == [True, False, True]
    assert float(res.radius[1]) == 0.0 and float(res.radius[0]) > float(res.radius[2]) > 0.05
    assert res.forward_calls == 3 * 5100
    with pytest.raises(ValueError, match="threat"):
        Smoothing(sigma=0.25, n=100)(Halfspace(), x, y, LpBall("linf", 0.1))
    with pytest.raises(ValueError, match="sigma"):
        Smoothing(sigma=0.5, n=100)(Smoothed(Halfspace(), 0.25), x, y, LpBall("l2", 0.1))
    with pytest.raises(ValueError, match="sigma"):
        Smoothing(sigma=None)(Halfspace(), x, y, LpBall("l2", 0.1))
    with pytest.raises(ValueError, match="sigma"):
        Smoothed(Halfspace(), sigma=0.0)
    with pytest.raises(TypeError, match="n"):
        Smoothed(Halfspace(), sigma=0.25, n=10.0)


@pytest.mark.slow
@pytest.mark.parametrize("name,eps", [("mnist-cnn-smooth-0.25", 0.5), ("mnist-cnn-smooth-0.50", 1.0)])
def test_shipped_smoothed_model_certified_points_survive_smoothadv_pgd(name, eps):
    g = rl.models.load(name)
    assert isinstance(g, Smoothed) and g.rejects
    x, y = rl.data.load("mnist", "test", n=16)
    threat = LpBall("l2", eps)
    cert = Smoothing(n0=100, n=1000, alpha=0.001, batch_size=1100)(g, x, y, threat)
    assert cert.certified.float().mean() >= 0.6  # the model is robust, not just sound
    view = g.attack_view()
    assert view.rejects and view(x[:2]).shape == (2, 11)
    pgd = rl.attacks.PGD(threat, steps=10, restarts=1, loss="ce", early_stop=False, seed=0)
    x_adv = pgd(view, x, y).x_adv
    assert bool(threat.admits(x_adv, x).all())
    g.n = 1000
    deployed = g(x_adv).argmax(1)
    broken = (deployed != y) & (deployed != 10)
    assert not bool((broken & cert.certified).any()), "a certified point was broken"
    # and the attack is a real one: it lowers the soft smoothed classifier's true-class
    # log-probability ten times more than a random perturbation of the same norm
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    x_rand = (x + eps * d / d.flatten(1).norm(dim=1)[:, None, None, None]).clamp(0, 1)
    with torch.no_grad():
        logp = [g.attack_view()(v).gather(1, y[:, None]).mean() for v in (x, x_rand, x_adv)]
    assert logp[0] - logp[2] > 10 * (logp[0] - logp[1]).clamp(min=1e-4), logp


def test_attack_view_declares_its_eot_and_averages_fresh_noise():
    from robustlab.evaluation.checks import uses_eot

    g = Smoothed(Halfspace(0.5), sigma=0.25, eot_samples=16, seed=2)
    view = g.attack_view()
    assert view.eot_samples == 16 and uses_eot([view]) and not uses_eot([g.naive_view()])
    x = torch.full((2, 1, 2, 2), 0.55)
    a, b = view(x), view(x)
    assert a.shape == (2, 3) and not torch.equal(a, b)  # fresh noise on every call
    assert torch.equal(a[:, 2], torch.full((2,), -1e4))  # the reject column can never win
    assert torch.allclose(a[:, :2].exp().sum(1), torch.ones(2), atol=1e-5)  # log of a mean of softmaxes
