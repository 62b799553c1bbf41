"""The AutoAttack ensembles ("standard", "plus", "rand") and the white-box attack names."""
from __future__ import annotations

import pytest
import torch

import robustlab as rl
from robustlab.attacks.apgd import APGD, APGDT
from robustlab.attacks.fab import FAB
from robustlab.evaluation.presets import Ensemble, build_attack, build_attacks


def test_standard_linf_l2_is_autoattacks_standard_version():
    for threat in (rl.LpBall("linf", 0.3), rl.LpBall("l2", 1.5)):
        a = build_attacks("standard", threat)
        assert [x.name for x in a] == ["APGD-CE", "APGD-T", "FAB-T", "Square-5000"]
        ce, t, fab, sq = a
        assert isinstance(ce, APGD) and ce.steps == 100 and ce.restarts == 1 and ce.loss == "ce" and ce.rho == 0.75
        assert isinstance(t, APGDT) and t.steps == 100 and t.n_target_classes == 9 and t.loss == "dlr"
        assert isinstance(fab, FAB) and fab.steps == 100 and fab.n_target_classes == 9 and fab.restarts == 1
        assert sq.max_queries == 5000 and sq.p_init == 0.8
        assert all(x.threat == threat for x in a)


def test_standard_l1_plus_and_rand():
    l1 = build_attacks("standard", rl.LpBall("l1", 10.0))
    assert [x.name for x in l1] == ["APGD-CEx5", "APGD-T", "FAB-T"]
    assert l1[0].large_reps and l1[1].large_reps and l1[1].n_target_classes == 5
    plus = build_attacks("plus", rl.LpBall("linf", 0.3))
    assert [x.name for x in plus] == ["APGD-CEx5", "APGD-DLRx5", "FABx5", "Square-5000", "APGD-T", "FAB-T"]
    rand = build_attacks("rand", rl.LpBall("linf", 0.3))
    assert [x.name for x in rand] == ["APGD-CE-EOT20", "APGD-DLR-EOT20"]
    assert all(x.eot_iter == 20 and x.restarts == 1 for x in rand)


def test_attack_names_parse():
    t = rl.LpBall("l2", 1.0)
    got = [build_attack(n, t).name for n in
           ["apgd-ce", "apgd-dlr-50x2", "apgd-t", "apgd-t-20", "fab", "fab-t", "fab-50x3", "cw", "deepfool"]]
    assert got == ["APGD-CE", "APGD-DLRx2", "APGD-T", "APGD-T", "FAB", "FAB-T", "FABx3", "CW-L2", "DeepFool"]
    assert build_attack("apgd-t-20", t).steps == 20
    assert build_attack("square", t).name.startswith("Square")
    assert [a.name for a in build_attacks("fgsm, standard,pgd", rl.LpBall("linf", 0.3))] == [
        "FGSM", "APGD-CE", "APGD-T", "FAB-T", "Square-5000", "PGD-40"]
    for bad, t in [("apgd-foo", rl.LpBall("linf", 0.3)), ("cw", rl.LpBall("linf", 0.3)),
                   ("deepfool", rl.LpBall("l1", 1.0)), ("", rl.LpBall("linf", 0.3))]:
        with pytest.raises(ValueError, match="attacks"):
            build_attacks(bad, t)


def test_evaluate_standard_has_a_row_per_attack(std_model, mnist_test):
    x, y = mnist_test[0][:40], mnist_test[1][:40]
    rep = rl.evaluate(std_model, x, y, rl.LpBall("linf", 0.3), attacks="standard", batch_size=20, diagnostics=False)
    assert [s.name for s in rep.attacks] == ["APGD-CE", "APGD-T", "FAB-T", "Square-5000"]
    assert rep.robust_accuracy == 0.0
    # Each attack runs only on the points still robust: APGD-CE breaks all, the others see none.
    assert rep.attacks[0].attacked == int(rep.clean_correct.sum())
    assert all(s.attacked == 0 and s.forward_calls == 0 for s in rep.attacks[1:])


def test_standard_on_at_model_beats_pgd_and_stays_high(at_model, mnist_test):
    # Strong and honest: at least as strong as PGD-40 on every run, and the shipped AT model
    # keeps most of its robustness (a collapse would mean a bug in the model or the attacks).
    x, y = mnist_test[0][:12], mnist_test[1][:12]
    threat = rl.LpBall("linf", 0.3)
    attacks = build_attacks("standard", threat)
    attacks[-1] = type(attacks[-1])(threat, max_queries=300, p_init=0.8)  # keep the test fast
    rep = rl.evaluate(at_model, x, y, threat, attacks=attacks, diagnostics=False)
    pgd = rl.evaluate(at_model, x, y, threat, attacks="pgd", diagnostics=False)
    assert rep.robust_accuracy <= pgd.robust_accuracy
    assert rep.robust_accuracy >= 0.5
    assert len(rep.attacks) == 4


def test_ensemble_wrapper_runs_all_members(std_model, mnist_test):
    x, y = mnist_test[0][:20], mnist_test[1][:20]
    threat = rl.LpBall("linf", 0.05)
    ens = build_attack("standard", threat)
    assert isinstance(ens, Ensemble) and ens.name == "AutoAttack-standard"
    small = Ensemble((APGD(threat, steps=10), APGDT(threat, steps=10, n_target_classes=2)), label="small")
    res = small(std_model, x, y)
    ce = APGD(threat, steps=10)(std_model, x, y)
    assert res.success.sum() >= ce.success.sum()
    assert res.forward_calls >= ce.forward_calls
    with torch.no_grad():
        assert torch.equal(res.success, std_model(res.x_adv).argmax(dim=1) != y)
    assert float(threat.distance(res.x_adv, x).max()) <= 0.05 + 1e-5
