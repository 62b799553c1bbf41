"""FAB, Square and the standard ensemble under a per-clip dB budget, the strengthened genetic
search, and PGD adversarial training under a dB ball, on the shipped keyword models."""
from __future__ import annotations

import math

import pytest
import torch

import robustlab as rl
from robustlab.attacks.fab import FAB
from robustlab.attacks.genetic import Genetic
from robustlab.attacks.square import Square
from robustlab.data.keywords import label_index
from robustlab.defenses.audio import BallPGDAT
from robustlab.evaluation.presets import ensemble


@pytest.fixture(scope="module")
def model():
    return rl.models.load("kws-cnn")


@pytest.fixture(scope="module")
def keyword_clips(model):
    """Correctly classified keyword clips (yes .. go) of the test split (unseen voices)."""
    x, y = rl.data.load("keywords", split="test", n=40)
    with torch.no_grad():
        ok = (model(x).argmax(1) == y) & (y < 10)
    return x[ok], y[ok]


def _fooled(model, x_adv, y, target=None):
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    return pred == target if target is not None else pred != y


def test_fab_takes_each_clips_radius(model, keyword_clips):
    x, y = keyword_clips[0][:6], keyword_clips[1][:6]
    threat = rl.DbBall(-40)
    for attack in (FAB(threat, steps=20), FAB(threat, steps=20, n_target_classes=3)):
        res = attack(model, x, y)
        assert threat.admits(res.x_adv, x).all(), attack.name
        assert torch.equal(_fooled(model, res.x_adv, y), res.success), attack.name
        assert int(res.success.sum()) >= 5, attack.name
        assert bool((res.distance[res.success] <= -40 + 1e-3).all())
    # The bound is per clip: a budget far below every boundary leaves the clips unbroken, and
    # the closest points found outside it come back projected into each clip's ball.
    tiny_ball = rl.DbBall(-120)
    tiny = FAB(tiny_ball, steps=5)(model, x, y)
    assert not bool(tiny.success.any()) and tiny_ball.admits(tiny.x_adv, x).all()


def test_square_searches_waveforms_with_runs_of_samples(model, keyword_clips):
    x, y = keyword_clips[0][:6], keyword_clips[1][:6]
    threat = rl.DbBall(-30)
    res = Square(threat, max_queries=200, seed=0)(rl.models.ScoreOnly(model), x, y)
    assert res.x_adv.shape == x.shape and threat.admits(res.x_adv, x).all()
    assert torch.equal(_fooled(model, res.x_adv, y), res.success)
    assert int(res.success.sum()) >= 4
    assert int(res.queries.max()) <= 200 and res.forward_calls == int(res.queries.sum())
    # The same budget of uniform noise fools fewer clips than the search.
    noise = threat.random_start(x, torch.Generator().manual_seed(0))
    assert int(_fooled(model, noise, y).sum()) < int(res.success.sum())
    # L2 (SNR) balls on audio and flat (N, T) vectors take the same path; points stay inside.
    snr = rl.SnrBall(20)
    r2 = Square(snr, max_queries=20, p_init=0.1)(model, x[:2], y[:2])
    assert snr.admits(r2.x_adv, x[:2]).all()
    flat = Square(rl.LpBall("linf", 0.01), max_queries=10)(lambda v: model(v[:, None]), x[:2, 0], y[:2])
    assert flat.x_adv.shape == (2, x.shape[-1])
    with pytest.raises(ValueError, match="x: Square expects"):
        Square(threat)(model, x[:1, :, None, None], y[:1])  # 5-D


def test_standard_ensemble_keeps_fab_and_square_for_db_balls():
    names = [a.name for a in ensemble("standard", rl.DbBall(-30))]
    assert names == ["APGD-CE", "APGD-T", "FAB-T", "Square-5000"]
    assert "Square-5000" in [a.name for a in ensemble("plus", rl.SnrBall(30))]


def test_genetic_search_beats_the_original_settings_targeted(model, keyword_clips):
    x, y = keyword_clips
    keep = y != label_index("stop")
    x, y = x[keep][:6], y[keep][:6]
    target = torch.full_like(y, label_index("stop"))
    threat = rl.DbBall(-20)
    new = Genetic(threat, population=10, generations=25, seed=0)
    old = Genetic(threat, population=10, generations=25, seed=0, init="clean", block=1)
    rn = new(rl.models.ScoreOnly(model), x, y, target=target)
    ro = old(rl.models.ScoreOnly(model), x, y, target=target)
    assert threat.admits(rn.x_adv, x).all() and torch.equal(_fooled(model, rn.x_adv, y, target), rn.success)
    assert int(rn.success.sum()) >= 3 and int(rn.success.sum()) > int(ro.success.sum())
    # Early stop per clip: a clip that succeeded spent fewer queries than the budget.
    assert bool((rn.queries[rn.success] < new.max_queries).all())
    with pytest.raises(ValueError, match="init"):
        Genetic(threat, init="noise")
    with pytest.raises(ValueError, match="block"):
        Genetic(threat, block=0)


def test_db_ball_pgd_adversarial_training_recipe(model, keyword_clips):
    x, y = keyword_clips[0][:8], keyword_clips[1][:8]
    threat = rl.DbBall(-30)
    assert threat.scaled(0.1) == rl.DbBall(-50) and threat.scaled(1.0) is threat
    assert abs(rl.SnrBall(30).scaled(0.5).snr - (30 + 20 * math.log10(2.0))) < 1e-9
    with pytest.raises(ValueError, match="factor"):
        threat.scaled(0.0)
    recipe = BallPGDAT(threat, steps=3, warmup=0.5)
    g = torch.Generator().manual_seed(0)
    model.eval()
    with torch.no_grad():
        clean = torch.nn.functional.cross_entropy(model(x), y)
    # Progress 0 of a ramp: no budget yet, the clean loss; full budget: PGD points, a higher loss.
    assert torch.allclose(recipe.loss(model, x, y, g, 0.0).detach(), clean)
    adv = recipe.loss(model, x, y, g, 0.9)
    assert adv.requires_grad and float(adv.detach()) > float(clean) + 1.0
    assert recipe.spec().startswith("ballpgdat:db:-30:steps=3")
    with pytest.raises(TypeError, match="threat"):
        BallPGDAT(rl.LpBall("linf", 0.1))
    with pytest.raises(ValueError, match="steps"):
        BallPGDAT(threat, steps=0)


def test_adversarially_trained_model_keeps_clips_the_standard_one_loses(model):
    """kws-cnn-at (PGD adversarial training at -30 dB) keeps some keyword clips of unseen voices
    correct under PGD-20 at -30 dB, where kws-cnn loses every one; its card's clean accuracy is
    the measured one."""
    from robustlab.attacks import PGD

    at = rl.models.load("kws-cnn-at")
    xa, ya = rl.data.load("keywords", split="test")
    with torch.no_grad():
        acc = float(torch.cat([at(xa[i:i + 240]).argmax(1) for i in range(0, 480, 240)]).eq(ya).float().mean())
    card = rl.models.card("kws-cnn-at")
    assert abs(card["test_accuracy"] - acc) < 1e-3 and card["recipe"]["adversarial"]["threat"] == "db:-30"
    x, y = xa[ya < 10][:24], ya[ya < 10][:24]
    threat = rl.DbBall(-30)
    robust = {}
    for name, m in (("kws-cnn", model), ("kws-cnn-at", at)):
        res = PGD(threat, steps=20, seed=0)(m, x, y)
        with torch.no_grad():
            correct = m(res.x_adv).argmax(1) == y
        assert threat.admits(res.x_adv, x).all()
        robust[name] = int(correct.sum())
    assert robust["kws-cnn"] == 0 and robust["kws-cnn-at"] >= 3
