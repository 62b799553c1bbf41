"""Text attacks on the shipped word-CNN: each recipe stays inside its word budget and similarity
floor, and every success it reports really flips the model's prediction."""
from __future__ import annotations

import pytest
import torch

import robustlab as rl
from robustlab.attacks.text import Beam, GreedyWIR, StopWords, TextAttack, Untargeted, WordNetSwap, recipe
from robustlab.threats.text import WordBudget, changes

torch.set_num_threads(1)
THREAT = WordBudget(words=0.2, sim=0.8, simby="glove")


@pytest.fixture(scope="module")
def mr():
    model = rl.models.load("mr-wordcnn")
    x, y = rl.data.load("mr", split="test", n=30)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    return model, x, y, correct


@pytest.mark.parametrize("name,min_success", [("wordnet-greedy", 0.4),
                                              pytest.param("pwws-like", 0.4, marks=pytest.mark.slow),
                                              pytest.param("textfooler-like", 0.4, marks=pytest.mark.slow),
                                              ("deepwordbug-like", 0.3)])
def test_recipe_flips_within_budget(mr, name, min_success):
    model, x, y, correct = mr
    res = recipe(name, THREAT)(model, x, y)
    assert isinstance(res.x_adv, list) and len(res.x_adv) == len(x)
    ok = res.success
    assert ok[correct].float().mean() >= min_success  # a real attack on a real model
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    assert torch.equal(ok, pred != y)  # success is the model's own verdict on exactly x_adv
    assert THREAT.admits(res.x_adv, x).all()
    changed = [i for i in range(len(x)) if res.x_adv[i] != x[i]]
    assert changed and all(res.distance[i] <= 0.2 + 1e-6 for i in changed)
    for i in changed:
        w, c, n = changes(res.x_adv[i], x[i])
        assert w + c <= int(0.2 * n + 1e-5)
    sim = THREAT.similarity([res.x_adv[i] for i in changed], [x[i] for i in changed])
    assert (sim >= 0.8 - 1e-6).all()
    assert res.queries.shape == (len(x),) and (res.queries >= 1).all()
    assert res.forward_calls == int(res.queries.sum())


def test_edit_kinds_respected(mr):
    model, x, y, _ = mr
    char = recipe("deepwordbug-like", WordBudget(words=0.2, edits="char"))(model, x, y)
    word = recipe("pwws-like", WordBudget(words=0.2, edits="word"))(model, x, y)
    assert all(changes(a, o)[0] == 0 for a, o in zip(char.x_adv, x))
    assert all(changes(a, o)[1] == 0 for a, o in zip(word.x_adv, x))
    with pytest.raises(ValueError, match="threat"):
        recipe("deepwordbug-like", WordBudget(words=0.2, edits="word"))


@pytest.mark.slow
def test_query_budget_enforced(mr):
    model, x, y, correct = mr
    res = recipe("textfooler-like", WordBudget(words=0.2), max_queries=12)(model, x, y)
    assert (res.queries <= 12).all()
    free = recipe("textfooler-like", WordBudget(words=0.2))(model, x, y)
    assert free.queries.max() > 12  # the budget did bind
    assert free.success[correct].sum() >= res.success[correct].sum()


def test_batched_equals_one_at_a_time(mr):
    model, x, y, _ = mr
    attack = recipe("wordnet-greedy", WordBudget(words=0.2))
    together = attack(model, x[:8], y[:8])
    alone = [attack(model, [s], y[i: i + 1]) for i, s in enumerate(x[:8])]
    assert together.x_adv == [r.x_adv[0] for r in alone]
    assert together.queries.tolist() == [int(r.queries[0]) for r in alone]


def test_beam_at_least_as_strong_as_greedy(mr):
    model, x, y, correct = mr
    greedy = TextAttack(Untargeted(), WordNetSwap(), [StopWords()], GreedyWIR(), max_words=0.2)(model, x, y)
    beam = TextAttack(Untargeted(), WordNetSwap(), [StopWords()], Beam(width=3), max_words=0.2)(model, x, y)
    assert beam.success[correct].sum() >= greedy.success[correct].sum()
    assert (beam.distance <= 0.2 + 1e-6).all()


@pytest.mark.slow
def test_genetic_flips_within_budget(mr):
    model, x, y, correct = mr
    res = recipe("genetic-like", WordBudget(words=0.2))(model, x[:20], y[:20])
    with torch.no_grad():
        assert torch.equal(res.success, model(res.x_adv).argmax(1) != y[:20])
    assert res.success[correct[:20]].float().mean() >= 0.3
    assert (res.distance <= 0.2 + 1e-6).all()


def test_targeted_goal(mr):
    model, x, y, correct = mr
    res = recipe("filter-evasion", WordBudget(words=0.2))(model, x, y)  # goal: class 0 ("negative")
    pos = correct & (y == 1)
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    assert torch.equal(res.success, pred == 0)
    assert res.success[pos].float().mean() >= 0.3


def test_bad_arguments(mr):
    model, x, y, _ = mr
    with pytest.raises(ValueError, match="name"):
        recipe("no-such-attack")
    with pytest.raises(TypeError, match="x"):
        recipe("pwws-like")(model, "one string", y[:1])
    with pytest.raises(ValueError, match="y"):
        recipe("pwws-like")(model, x[:3], y[:2])
    with pytest.raises(ValueError, match="max_queries"):
        recipe("pwws-like", max_queries=0)
