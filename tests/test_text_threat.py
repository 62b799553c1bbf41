"""The WordBudget threat, the text datasets, the report fragment, the normalizing defense and the
optional-extra boundary (robustlab imports without transformers)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import robustlab as rl
from robustlab.threats import parse_threat
from robustlab.threats.text import WordBudget, changes

torch.set_num_threads(1)


def test_spec_round_trip_and_validation():
    for spec in ["words:0.2,sim:0.8", "words:0.1", "words:0.25,sim:0.5,simby:glove", "words:0.3,edits:char"]:
        t = parse_threat(spec)
        assert isinstance(t, WordBudget) and t.spec() == spec and parse_threat(t.spec()) == t
    for bad in ["words:0", "words:1.5", "words:0.2,sim:2", "words:0.2,edits:emoji", "sim:0.8", "words:0.2,foo:1"]:
        with pytest.raises(ValueError, match="threat"):
            parse_threat(bad)
    with pytest.raises(TypeError, match="x"):
        WordBudget().validate("not a list")
    with pytest.raises(ValueError, match="x"):
        WordBudget().validate(["fine", "   "])


def test_distance_counts_words_and_kinds():
    t = WordBudget(words=0.25)
    orig = ["you are an idiot", "this film is terrible and boring", "a b c d", "you are an idiot"]
    adv = ["you are an i d i o t", "this movie is terrible and boring", "a b c d e f", "you are an іdіot"]
    assert t.distance(adv, orig).tolist() == pytest.approx([0.25, 1 / 6, 0.5, 0.25])
    assert changes(adv[0], orig[0]) == (0, 1, 4)  # spacing is a char edit of one word
    assert changes(adv[1], orig[1]) == (1, 0, 6)  # a synonym is a word edit
    assert changes(adv[3], orig[3]) == (0, 1, 4)  # homoglyphs too
    assert t.admits(adv, orig).tolist() == [True, True, False, True]
    assert WordBudget(words=0.25, edits="word").admits(adv, orig).tolist() == [False, True, False, False]
    assert WordBudget(words=0.25).budget(4) == 1 and WordBudget(words=0.2).budget(4) == 0


def test_similarity_floor():
    t = WordBudget(words=1.0, sim=0.9, simby="glove")
    orig = ["a wonderful and moving film", "a wonderful and moving film"]
    adv = ["a marvelous and moving film", "a dreadful and tedious mess"]
    sim = t.similarity(adv, orig)
    assert sim[0] > sim[1]
    assert t.admits(adv, orig).tolist() == [bool(sim[0] >= 0.9), bool(sim[1] >= 0.9)]
    assert t.similarity(orig, orig).tolist() == [1.0, 1.0]


def test_datasets():
    x, y = rl.data.load("mr", split="test", n=5)
    assert isinstance(x, list) and all(isinstance(s, str) for s in x) and y.dtype == torch.int64
    assert rl.data.info("mr").sizes == {"train": 3400, "test": 600}
    xs, ys = rl.data.load("sms", split="train", n=3, start=10)
    assert len(xs) == 3 and set(ys.tolist()) <= {0, 1}
    xr, yr = rl.data.load("r8", split="test", n=4)
    assert yr.max() < 8
    with pytest.raises(ValueError, match="n"):
        rl.data.load("mr", split="test", n=601)
    with pytest.raises(ValueError, match="split"):
        rl.data.load("mr", split="validation")
    train, _ = rl.data.load("mr", split="train")
    assert not set(train) & set(rl.data.load("mr", split="test")[0])


def test_shipped_model_accuracy():
    model = rl.models.load("mr-wordcnn")
    x, y = rl.data.load("mr", split="test")
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean()
    assert acc >= 0.74  # the anchor (TextAttack cnn-mr) is 76.8%
    assert rl.models.card("mr-wordcnn")["test_accuracy"] == pytest.approx(float(acc), abs=1e-3)


def test_report_fragment_escapes_and_highlights():
    from robustlab.report.text_section import text_section

    html = text_section(["a <b> good film", "same"], ["a <b> fine film", "same"], [1, 0], [0, 0],
                        ["neg", "pos"], [0.25, 0.0])
    assert "<del>good</del>" in html and "<ins>fine</ins>" in html
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert html.count("<tr>") == 2  # the header and the one changed sentence
    with pytest.raises(ValueError, match="labels"):
        text_section(["a"], ["b"], [1, 0])


def test_normalizer_undoes_character_attacks():
    from robustlab.attacks.text import recipe
    from robustlab.defenses.text_normalize import Normalized, Normalizer

    n = Normalizer()
    assert n("you are an i d i o t") == "you are an idiot"
    assert n("what a st.upid film") == "what a stupid film"
    assert n("FREE entry to wіn") == "FREE entry to win"
    base = rl.models.load("mr-wordcnn")
    defended = rl.models.load("mr-wordcnn-norm")
    assert isinstance(defended, Normalized) and defended.naive_view() is not defended
    x, y = rl.data.load("mr", split="test", n=40)
    res = recipe("deepwordbug-like", WordBudget(words=0.2))(base, x, y)
    broken = res.success & (defended(x).argmax(1) == y)
    with torch.no_grad():
        recovered = defended([res.x_adv[i] for i in broken.nonzero()[:, 0]]).argmax(1) == y[broken]
    assert broken.sum() >= 8 and recovered.float().mean() >= 0.5  # the transfer attack mostly fails
    adaptive = recipe("deepwordbug-like", WordBudget(words=0.2))(defended, x, y)
    with torch.no_grad():
        assert torch.equal(adaptive.success, defended(adaptive.x_adv).argmax(1) != y)


def test_evaluate_text_end_to_end():
    from robustlab.evaluation.text import evaluate_text

    model = rl.models.load("mr-wordcnn")
    x, y = rl.data.load("mr", split="test", n=30)
    report, x_adv, queries = evaluate_text(model, x, y, "words:0.2,sim:0.8,simby:glove",
                                           "deepwordbug-like,wordnet-greedy")
    assert report.robust_accuracy < report.clean_accuracy
    assert report.threat == "words:0.2,sim:0.8,simby:glove"
    with torch.no_grad():
        assert torch.equal(report.robust, model(x_adv).argmax(1) == y)
    assert [a.name for a in report.attacks] == ["deepwordbug-like", "wordnet-greedy"]
    assert (queries >= 1).all() and (report.distance <= 0.2 + 1e-6).all()


@pytest.mark.slow
def test_imports_without_transformers():
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('transformers', 'tokenizers'):\n"
            "            raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import robustlab as rl\n"
            "from robustlab.attacks.text import recipe\n"
            "from robustlab.models.minilm import available\n"
            "assert not available()\n"
            "rl.threats.parse_threat('words:0.2,sim:0.8')\n"
            "m = rl.models.load('mr-wordcnn')\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
