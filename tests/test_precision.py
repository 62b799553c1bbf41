"""Reduced-precision attacks (models.Autocast, evaluate(precision=...)): bfloat16 speeds the
search, but every decision about success is taken in full precision."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import robustlab as rl
from robustlab.attacks.base import Counter, ModelGuard
from robustlab.cli import main
from robustlab.evaluation.runner import run_batch
from robustlab.report.leaderboard import leaderboard
from robustlab.results import AttackResult


class _NearTie(nn.Module):
    """Two classes whose logits are 100 and 100.1 whatever the input: class 1 wins in fp32, while
    bfloat16 (spacing 0.5 at 100) rounds both to 100 and argmax picks class 0."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(1, 2)
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.bias.copy_(torch.tensor([100.0, 100.1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1).mean(dim=1, keepdim=True))


class _ClaimEverything:
    """Returns the clean points and claims success wherever its model misclassifies them."""

    name = "claim"

    def __call__(self, model, x, y, *, target=None) -> AttackResult:
        with torch.no_grad():
            pred = model(x).argmax(dim=1)
        return AttackResult(x_adv=x.clone(), success=pred != y, distance=torch.zeros(len(x)),
                            forward_calls=len(x), backward_calls=0)


def test_bfloat16_alone_gets_the_near_tie_wrong_and_the_refinement_gets_it_right():
    m = _NearTie().eval()
    x = torch.rand(8, 1, 4, 4)
    with torch.no_grad():
        assert bool((m(x).argmax(1) == 1).all())
        assert bool((rl.models.Autocast(m, tol=0)(x).argmax(1) == 0).all())  # the bf16 rounding error
        fast = rl.models.Autocast(m)
        out = fast(x)
    assert bool((out.argmax(1) == 1).all())
    assert torch.equal(out, m(x).detach())
    assert fast.refine_calls == 8


def test_logits_close_exact_near_decisions_and_gradients_agree(at_model, mnist_test, linf03):
    x, y = mnist_test[0][:200], mnist_test[1][:200]
    # Points along the way to adversarial ones: some end near a decision boundary.
    x_adv = rl.attacks.PGD(linf03, steps=5, early_stop=False)(at_model, x, y).x_adv
    pts = torch.cat([x, x_adv, 0.5 * (x + x_adv)])
    fast = rl.models.Autocast(at_model)
    with torch.no_grad():
        ref = at_model(pts)
        out = fast(pts)
    scale = ref.abs().amax(dim=1)
    assert float(((out - ref).abs().amax(dim=1) / scale).max()) < 0.02
    top = ref.topk(2, dim=1).values
    # Within the wrapper's 5% tolerance by a margin larger than bfloat16's error (< 1%).
    near = (top[:, 0] - top[:, 1]) <= 0.04 * scale
    assert 0 < int(near.sum()) < len(pts)  # the check below is about something
    # Full-precision values where a decision is close (fp32 itself varies ~1e-6 with the batch).
    assert torch.allclose(out[near], ref[near], rtol=0, atol=1e-4)
    assert torch.equal(out.argmax(1), ref.argmax(1))
    assert fast.refine_calls >= int(near.sum())

    with ModelGuard(at_model):
        lossf = lambda o: torch.nn.functional.cross_entropy(o, y, reduction="none")  # noqa: E731
        _, g32 = Counter(at_model).logits_and_grad(x, lossf)
        with ModelGuard(fast):
            _, g16 = Counter(fast).logits_and_grad(x, lossf)
    cos = torch.nn.functional.cosine_similarity(g32.flatten(1), g16.flatten(1), dim=1)
    assert float(cos.median()) > 0.95
    # The sign step of Linf attacks: coordinates holding 95% of the gradient's mass agree.
    agree = ((g32.sign() == g16.sign()).float() * g32.abs()).sum() / g32.abs().sum()
    assert float(agree) > 0.95
    assert all(not p.requires_grad or p.grad is None for p in at_model.parameters())


def test_a_point_is_broken_only_if_the_full_precision_model_misclassifies_it():
    m = _NearTie().eval()
    x, y = torch.rand(6, 1, 4, 4), torch.ones(6, dtype=torch.int64)
    threat = rl.LpBall("linf", 0.1)
    with ModelGuard(m):
        b = run_batch(m, rl.models.Autocast(m, tol=0), x, y, threat, [_ClaimEverything()], [], 0)
    assert bool(b.clean_correct.all()) and bool(b.robust.all()) and bool((b.broken_by == -1).all())


def test_evaluate_bf16_matches_fp32_and_is_its_own_run(at_model, mnist_test, linf03, tmp_path):
    x, y = mnist_test[0][:150], mnist_test[1][:150]
    db = tmp_path / "runs.db"
    kw = dict(attacks="apgd-ce-20", batch_size=75, diagnostics=False, store=db)
    r32 = rl.evaluate(at_model, x, y, linf03, **kw)
    r16 = rl.evaluate(at_model, x, y, linf03, precision="bf16", **kw)
    assert "precision" not in r32.config and r16.config["precision"] == "bf16"
    assert r16.run_id != r32.run_id
    assert torch.equal(r16.clean_correct, r32.clean_correct)  # clean accuracy is always fp32
    assert abs(r16.robust_accuracy - r32.robust_accuracy) <= 2 / 150
    assert r16.forward_calls >= r16.backward_calls > 0
    # Resuming the bf16 run reads it back instead of mixing it with the fp32 one.
    again = rl.evaluate(at_model, x, y, linf03, precision="bf16", **kw)
    assert again.resumed_points == 150 and torch.equal(again.robust, r16.robust)
    # The leaderboard tells the two apart.
    (group,), _ = leaderboard(db)
    rows = {e.run_id: e.attacks for e in group.entries}
    assert rows[r32.run_id] == ["APGD-CE"]
    assert rows[r16.run_id] == ["APGD-CE", "(searched in bf16, decided in fp32)"]


def test_bad_precision_is_named(std_model, mnist_test, linf03):
    x, y = mnist_test[0][:4], mnist_test[1][:4]
    with pytest.raises(ValueError, match="precision"):
        rl.evaluate(std_model, x, y, linf03, precision="int8")
    with pytest.raises(ValueError, match="precision: bf16 needs a white-box"):
        rl.models.with_precision(rl.models.LabelOnly(lambda t: std_model(t).argmax(1), n_classes=10), "bf16")
    with pytest.raises(TypeError, match="model"):
        rl.models.Autocast(lambda t: t)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype"):
        rl.models.Autocast(std_model, dtype=torch.float32)
    with pytest.raises(ValueError, match="tol"):
        rl.models.Autocast(std_model, tol=1.5)
    assert rl.models.with_precision(std_model, "fp32") is std_model


def test_cli_precision_flag_round_trips_and_errors(tmp_path, capsys):
    db = tmp_path / "runs.db"
    rc = main(["evaluate", "--model", "mnist-cnn", "--n", "40", "--attacks", "fgsm", "--no-diagnostics",
               "--precision", "bf16", "--store", str(db)])
    assert rc == 0
    assert "precision=bf16" in capsys.readouterr().out
    cfg = next(tmp_path.glob("*.toml")).read_text()
    assert 'precision = "bf16"' in cfg
    rc = main(["evaluate", "--model", "mnist-cnn", "--n", "4", "--precision", "fp64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "precision" in err[-1]


def test_fab_on_autocast_reports_only_points_the_fp32_model_confirms(std_model, mnist_test):
    # FAB walks along the decision boundary, so it searches without the refinement and confirms
    # the points it keeps in full precision.
    x, y = mnist_test[0][:60], mnist_test[1][:60]
    threat = rl.LpBall("l2", 1.0)
    fast = rl.models.Autocast(std_model)
    res = rl.attacks.FAB(threat, n_target_classes=2, steps=20)(fast, x, y)
    assert 0 < int(res.success.sum()) < 60
    with torch.no_grad():
        pred = std_model(res.x_adv).argmax(dim=1)
    assert torch.equal(res.success, pred != y)
    assert fast.refine is True  # switched back on after the search
    assert bool((res.distance[res.success] <= 1.0 + 1e-5).all())
