"""Gradient-masking diagnostics: each masked model is flagged by the checks that should see it;
the shipped standard and adversarially trained models are not flagged at all."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import robustlab as rl
from robustlab.evaluation.diagnostics import Diagnostic, check_outputs, run_diagnostics, uses_eot
from robustlab.models.zoo import weights_path

from masked_models import PermutedLabels, QuantizedInput, RandomizedTransform, SaturatedSoftmax

ALL = {"clean_accuracy", "softmax_outputs", "randomized_model", "gradients", "loss_along_gradient",
       "accuracy_vs_eps", "unbounded_eps", "more_steps", "noise_blackbox", "pgd_vs_fgsm"}
THREAT = rl.LpBall("linf", 0.3)


def _status(report) -> dict[str, str]:
    return {d.name: d.status for d in report.diagnostics}


def _warned(report) -> set[str]:
    return {d.name for d in report.diagnostics if d.status == "warn"}


@pytest.fixture(scope="module")
def pts():
    return rl.data.load("mnist", split="test", n=40)


def _eval(model, pts, attacks=None, diagnostics="full"):
    torch.manual_seed(0)
    x, y = pts
    return rl.evaluate(model, x, y, THREAT, attacks or [rl.attacks.PGD(THREAT, steps=5)], diagnostics=diagnostics)


def test_entries_are_complete_and_cost_is_reported(pts):
    rep = _eval(rl.models.load("mnist-cnn"), pts)
    assert {d.name for d in rep.diagnostics} == ALL
    for d in rep.diagnostics:
        assert isinstance(d, Diagnostic)
        assert d.status in ("pass", "warn")
        assert isinstance(d.figure, float) and d.explanation and "\n" not in d.explanation
        assert d.seconds >= 0 and d.forward_calls >= 0 and d.backward_calls >= 0
    by = {d.name: d for d in rep.diagnostics}
    assert by["gradients"].backward_calls == 40  # one backward per clean-correct point
    # One sweep serves accuracy_vs_eps and unbounded_eps: its cost is reported once.
    assert by["accuracy_vs_eps"].forward_calls > 0 and by["unbounded_eps"].forward_calls == 0
    assert "shared" in by["unbounded_eps"].details["cost"]


def test_quantized_input_is_flagged(pts):
    rep = _eval(QuantizedInput(), pts)
    assert rep.robust_accuracy > 0.9  # the naive evaluation is fooled ...
    # ... and the diagnostics say why: zero gradients, nothing uphill, eps=1 fails, noise wins.
    assert {"gradients", "loss_along_gradient", "unbounded_eps", "noise_blackbox"} <= _warned(rep)
    assert _status(rep)["softmax_outputs"] == "pass" and _status(rep)["randomized_model"] == "pass"


def test_saturated_softmax_is_flagged(pts):
    rep = _eval(SaturatedSoftmax(), pts)
    assert rep.robust_accuracy > 0.9
    assert {"softmax_outputs", "gradients", "unbounded_eps"} <= _warned(rep)
    by = {d.name: d for d in rep.diagnostics}
    assert by["softmax_outputs"].figure == 1.0


def test_randomized_transform_is_flagged_without_eot(pts):
    # The runner's re-check draws fresh noise, so it rejects some of PGD's claimed successes.
    with pytest.warns(UserWarning, match="does not confirm"):
        rep = _eval(RandomizedTransform(), pts)
    assert "randomized_model" in _warned(rep)
    assert {d.name: d for d in rep.diagnostics}["randomized_model"].figure > 0.9


@dataclasses.dataclass(frozen=True)
class _EOTPGD:
    """A PGD that declares EOT (the attribute the check reads); it delegates to PGD."""

    threat: rl.LpBall
    eot_samples: int = 8
    steps: int = 5
    seed: int | None = 0

    @property
    def name(self) -> str:
        return "EOT-PGD"

    def __call__(self, model, x, y, *, target=None):
        return rl.attacks.PGD(self.threat, steps=self.steps, seed=self.seed)(model, x, y, target=target)


def test_randomized_model_passes_when_an_attack_uses_eot(pts):
    assert uses_eot([_EOTPGD(THREAT)]) and not uses_eot([rl.attacks.PGD(THREAT)])
    x, _ = pts
    torch.manual_seed(0)
    d = {d.name: d for d in check_outputs(RandomizedTransform(), x[:20], [_EOTPGD(THREAT)])}["randomized_model"]
    assert d.status == "pass" and d.figure > 0.9 and "EOT" in d.explanation


def test_below_chance_model_is_flagged(pts):
    rep = _eval(PermutedLabels(), pts)
    assert rep.clean_accuracy < 0.1
    assert "clean_accuracy" in _warned(rep)


def test_iterative_attack_weaker_than_fgsm_is_flagged(pts):
    weak = rl.attacks.PGD(THREAT, steps=5, step_size=0.001, random_start=False)
    rep = _eval(rl.models.load("mnist-cnn"), pts, [weak])
    assert rep.robust_accuracy > 0.9
    assert {"pgd_vs_fgsm", "noise_blackbox"} <= _warned(rep)


def test_standard_model_is_not_flagged():
    x, y = rl.data.load("mnist", split="test", n=100)
    torch.manual_seed(0)
    rep = rl.evaluate(rl.models.load("mnist-cnn"), x, y, THREAT, diagnostics="full")
    assert rep.robust_accuracy < 0.05
    assert _warned(rep) == set(), [d.explanation for d in rep.diagnostics if d.status == "warn"]
    assert len(rep.diagnostics) == len(ALL)


@pytest.mark.skipif(not weights_path("mnist-cnn-at").is_file(), reason="mnist-cnn-at weights not trained yet")
def test_adversarially_trained_model_is_not_flagged():
    x, y = rl.data.load("mnist", split="test", n=100)
    torch.manual_seed(0)
    rep = rl.evaluate(rl.models.load("mnist-cnn-at"), x, y, THREAT, "pgd-20", diagnostics="full")
    assert rep.robust_accuracy > 0.8
    assert _warned(rep) == set(), [d.explanation for d in rep.diagnostics if d.status == "warn"]


def test_diagnostics_are_stored_reused_and_can_be_switched_off(pts, tmp_path):
    x, y = pts
    model = rl.models.load("mnist-cnn")
    db = tmp_path / "runs.db"
    first = rl.evaluate(model, x, y, THREAT, "pgd-5", store=db)
    with rl.Store(db) as s:
        stored = s.diagnostics(first.run_id)
    assert [d["name"] for d in stored] == [d.name for d in first.diagnostics]
    again = rl.evaluate(model, x, y, THREAT, "pgd-5", store=db)  # resumed: read back, not recomputed
    assert again.resumed_points == 40
    assert [dataclasses.asdict(d) for d in again.diagnostics] == [dataclasses.asdict(d) for d in first.diagnostics]
    off = rl.evaluate(model, x, y, THREAT, "pgd-5", diagnostics=False)
    assert off.diagnostics == []


def test_black_box_targets_get_only_the_checks_they_can_pay_for(pts):
    from robustlab.models.access import LabelOnly, ScoreOnly

    x, y = pts[0][:20], pts[1][:20]
    net = rl.models.load("mnist-cnn")
    clean = torch.ones(20, dtype=torch.bool)
    robust = clean.clone()
    robust[:5] = False
    score = ScoreOnly(net)
    names = [d.name for d in run_diagnostics(score, x, y, THREAT, [], clean_correct=clean, robust=robust)]
    assert names == ["clean_accuracy", "softmax_outputs", "randomized_model", "noise_blackbox"]
    assert score.queries > 0  # the target's own counter sees the diagnostics' queries
    label = LabelOnly(lambda t: net(t).argmax(1))
    names = [d.name for d in run_diagnostics(label, x, y, THREAT, [], clean_correct=clean, robust=robust)]
    assert names == ["clean_accuracy", "noise_blackbox"]
    tight = ScoreOnly(net, max_queries=60)  # enough for the two output calls, not for the noise
    with pytest.warns(UserWarning, match="query budget ran out"):
        diags = run_diagnostics(tight, x, y, THREAT, [], clean_correct=clean, robust=robust)
    assert [d.name for d in diags] == ["clean_accuracy", "softmax_outputs", "randomized_model"]


@pytest.mark.parametrize("masked, expected", [(QuantizedInput, {"gradients", "unbounded_eps"}),
                                              (SaturatedSoftmax, {"softmax_outputs", "gradients"})])
def test_the_default_fast_diagnostics_stay_in_budget_and_still_catch_masking(masked, expected):
    x, y = rl.data.load("mnist", split="test", n=200)
    torch.manual_seed(0)
    rep = rl.evaluate(masked(), x, y, THREAT, "pgd-20")  # the default call: diagnostics "fast"
    spent = sum(d.forward_calls + d.backward_calls for d in rep.diagnostics)
    assert spent <= 0.25 * (rep.forward_calls + rep.backward_calls)
    assert expected <= _warned(rep)
    scope = {d.name: d for d in rep.diagnostics}["scope"]
    assert "accuracy_vs_eps" in scope.explanation and "Square" in scope.explanation
    assert "accuracy_vs_eps" not in {d.name for d in rep.diagnostics}


def test_fast_diagnostics_do_not_flag_the_shipped_models():
    x, y = rl.data.load("mnist", split="test", n=200)
    for name in ("mnist-cnn", "mnist-cnn-at"):
        torch.manual_seed(0)
        rep = rl.evaluate(rl.models.load(name), x, y, THREAT, "pgd-20")
        assert _warned(rep) == set(), (name, [d.explanation for d in rep.diagnostics if d.status == "warn"])
