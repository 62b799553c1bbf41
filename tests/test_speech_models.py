"""The shipped keyword model, its log-mel front end, the genetic attack and the audio defenses,
on the real shipped model and clips from unseen voices."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import robustlab as rl
from robustlab.attacks.genetic import Genetic
from robustlab.data.keywords import label_index
from robustlab.defenses.audio import Codec, Downsample, Quantize
from robustlab.models.kws import LogMel, mel_filterbank
from robustlab.models.views import attack_view_of, model_spec


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return rl.models.load("kws-cnn")


@pytest.fixture(scope="module")
def keyword_clips(model):
    """Correctly classified keyword clips (yes .. go) of the test split."""
    x, y = rl.data.load("keywords", split="test", n=60)
    with torch.no_grad():
        ok = (model(x).argmax(1) == y) & (y < 10)
    return x[ok], y[ok]


def test_shipped_model_hears_unseen_voices(model):
    x, y = rl.data.load("keywords", split="test")
    with torch.no_grad():
        acc = float(torch.cat([model(x[i:i + 240]).argmax(1) for i in range(0, 480, 240)]).eq(y).float().mean())
    assert acc >= 0.95
    card = rl.models.card("kws-cnn")
    assert abs(card["test_accuracy"] - acc) < 1e-3 and card["seed"] == 0


def test_log_mel_matches_a_numpy_reference_and_has_gradients():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(2, 8000, generator=g) * 2 - 1
    ours = LogMel()(w)[:, 0].double().numpy()
    # Reference: reflect-padded, periodic-Hann frames of 256 every 128 samples, |rfft|^2, mel, log.
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(256) / 256)
    pad = np.pad(w.double().numpy(), ((0, 0), (128, 128)), mode="reflect")
    frames = np.stack([pad[:, i:i + 256] for i in range(0, 8000 + 1, 128)], axis=1) * win
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2  # (N, frames, 129)
    ref = np.log(power @ mel_filterbank(40, 256, 8000).double().numpy().T + 1e-6).transpose(0, 2, 1)
    assert ours.shape == (2, 40, 63) and np.allclose(ours, ref, atol=1e-3)
    fb = mel_filterbank(40, 256, 8000)
    # Every filter sees a bin near its peak; centres increase; every bin above 60 Hz is covered.
    assert bool((fb >= 0).all()) and bool((fb.amax(dim=1) > 0.5).all())
    assert bool((fb.argmax(dim=1).diff() >= 0).all()) and bool((fb.sum(0)[2:-1] > 0).all())
    w = w.requires_grad_(True)
    LogMel()(w).sum().backward()
    assert torch.isfinite(w.grad).all() and float(w.grad.abs().mean()) > 0


@pytest.mark.slow
def test_genetic_attack_fools_the_model_black_box(model, keyword_clips):
    x, y = keyword_clips[0][:4], keyword_clips[1][:4]
    threat = rl.DbBall(-20)
    attack = Genetic(threat, population=8, generations=20, seed=0)
    res = attack(rl.models.ScoreOnly(model), x, y)
    with torch.no_grad():
        fooled = model(res.x_adv).argmax(1) != y
    assert torch.equal(fooled, res.success) and int(res.success.sum()) >= 3
    assert threat.admits(res.x_adv, x).all() and bool((res.distance <= -20 + 1e-3).all())
    # Queries, counted: 1 clean + 8 per generation until success, never more than the budget.
    assert bool(((res.queries - 1) % 8 == 0).all()) and int(res.queries.max()) <= attack.max_queries
    assert res.forward_calls == int(res.queries.sum()) and res.backward_calls == 0
    short = Genetic(threat, population=4, generations=2, seed=0)
    assert torch.equal(short(model, x[:2], y[:2]).x_adv, short(model, x[:2], y[:2]).x_adv)
    # The same budget of random noise (the genetic search's starting point) fools far fewer.
    noise = threat.random_start(x, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert int((model(noise).argmax(1) != y).sum()) < int(res.success.sum())


def test_genetic_argument_errors():
    with pytest.raises(ValueError, match="population"):
        Genetic(rl.DbBall(-30), population=1)
    with pytest.raises(ValueError, match="mutation_prob"):
        Genetic(rl.DbBall(-30), mutation_prob=0)
    with pytest.raises(TypeError, match="threat"):
        Genetic("db:-30")


def test_front_end_views_match_the_deployed_model(model, keyword_clips):
    x, y = keyword_clips[0][:4], keyword_clips[1][:4]
    for d in (Downsample(model, 2), Quantize(model, 8), Codec(model, 20)):
        view = attack_view_of(d)
        with torch.no_grad():
            assert torch.allclose(view(x), d(x), atol=1e-5), d.spec()
            assert (d(x).argmax(1) == y).float().mean() >= 0.75, d.spec()  # the front end keeps the words
        xg = x.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(view(xg), y).backward()
        assert float(xg.grad.abs().sum()) > 0, d.spec()
        assert d.naive_view() is model
    assert model_spec(Codec(Quantize(model, 8), 20)) == "codec:q20(quantize:8)"
    # Requantisation really rounds: the deployed input sits on the 8-bit grid.
    w = 2 * Quantize(model, 8).apply(x) - 1
    assert torch.allclose(w, torch.round((w + 1) * 127.5) / 127.5 - 1, atol=1e-5)


def test_dithered_quantizer_draw_is_fixed_per_clip(model, keyword_clips):
    x = keyword_clips[0][:4]
    d = Quantize(model, 6, dither=True, eot_samples=4)
    assert torch.equal(d.apply(x), torch.cat([d.apply(x[i:i + 1]) for i in range(4)]))
    assert not torch.equal(d.apply(x, "eot0"), d.apply(x))  # the attacker's draws are not the deployed one
    with torch.no_grad():
        view = attack_view_of(d)(x)
    # EOT: the mean of 4 draws' log-probabilities (a geometric mean of probabilities, so <= 1).
    assert bool((view.exp().sum(1) <= 1 + 1e-5).all()) and bool((view <= 0).all())


def test_targeted_pgd_makes_it_hear_stop(model, keyword_clips):
    from robustlab.attacks import PGD

    x, y = keyword_clips
    keep = y != label_index("stop")
    x, y = x[keep][:16], y[keep][:16]
    threat = rl.DbBall(-30)
    target = torch.full_like(y, label_index("stop"))
    res = PGD(threat, steps=30)(model, x, y, target=target)
    with torch.no_grad():
        heard = model(res.x_adv).argmax(1)
    assert threat.admits(res.x_adv, x).all()
    assert float((heard == target).float().mean()) >= 0.9
