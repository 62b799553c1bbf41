"""The evaluation core's seams: a custom threat, a defended model judged apart from its attack
view, certificates, rejection, per-sample radii, and the run ids of today's Lp evaluations."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

import robustlab as rl
from robustlab.attacks import APGD, PGD, Square
from robustlab.attacks.base import Counter, finish, prepare
from robustlab.certify import LinearExact
from robustlab.evaluation.runner import UnsoundCertificate, resolve_attacks, run_identity
from robustlab.report.html import write_report
from robustlab.results import AttackResult, CertResult
from robustlab.threats import parse_threat, register_threat


# -- a custom threat, written here, runs through evaluate, the store, the report and the CLI --------
@dataclass(frozen=True)
class PixelBudget:
    """L0: at most ``k`` pixels may change, each anywhere in [0, 1]."""

    k: int

    @classmethod
    def parse(cls, spec: str) -> "PixelBudget":
        return cls(int(spec.split(":", 1)[1]))

    def spec(self) -> str:
        return f"pixels:{self.k}"

    def validate(self, x: object) -> None:
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise ValueError("x: expected (N, C, H, W) images")

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return ((x_adv - x).abs().flatten(1) > 0).sum(dim=1).float()

    def admits(self, x_adv: Tensor, x: Tensor) -> Tensor:
        inside = ((x_adv >= 0) & (x_adv <= 1)).flatten(1).all(dim=1)
        return inside & (self.distance(x_adv, x) <= self.k)


register_threat("pixels", PixelBudget.parse)


@dataclass(frozen=True)
class GreedyPixels:
    """Set the ``k`` pixels of largest |gradient| to the extreme their gradient points to."""

    threat: PixelBudget
    name: str = "greedy-pixels"

    def __call__(self, model, x, y, *, target=None) -> AttackResult:
        prepare(model, x, y, target)
        c = Counter(model)
        _, g = c.logits_and_grad(x, lambda out: nn.functional.cross_entropy(out, y, reduction="none"))
        flat = g.flatten(1).abs()
        top = flat.topk(self.threat.k, dim=1).indices
        x_adv = x.clone().flatten(1)
        x_adv.scatter_(1, top, (g.flatten(1).gather(1, top) > 0).to(x.dtype))
        x_adv = x_adv.reshape(x.shape)
        success = c.logits(x_adv).argmax(1) != y
        return finish(self.threat, x, x_adv, success, c)


def test_a_custom_threat_runs_through_evaluate_store_report_and_cli(std_model, mnist_test, tmp_path):
    x, y = mnist_test[0][:40], mnist_test[1][:40]
    threat = parse_threat("pixels:40")
    db = tmp_path / "runs.db"
    r = rl.evaluate(std_model, x, y, threat, attacks=[GreedyPixels(threat)], store=db, batch_size=20)
    assert r.threat == "pixels:40" and r.robust_accuracy < r.clean_accuracy
    broken = r.broken_by >= 0
    assert bool((r.distance[broken] <= 40).all()) and bool((r.distance[broken] > 0).all())
    page = write_report(db, r.run_id, tmp_path / "r.html").read_text()
    assert "pixels:40" in page and "greedy-pixels" in page
    with rl.Store(db) as s:
        assert s.run(r.run_id).threat == "pixels:40"
    out = subprocess.run([sys.executable, "-m", "robustlab.cli", "runs", str(db)], capture_output=True, text=True,
                         env={**__import__("os").environ, "COLUMNS": "400"})
    assert out.returncode == 0 and "pixels:40" in out.stdout


def test_points_outside_the_threat_count_as_failures(std_model, mnist_test):
    x, y = mnist_test[0][:10], mnist_test[1][:10]
    threat = PixelBudget(3)

    def cheat(model, xs, ys, target=None):  # flips every pixel: breaks everything, admitted nowhere
        x_adv = 1 - xs
        return AttackResult(x_adv, torch.ones(len(ys), dtype=torch.bool), threat.distance(x_adv, xs))

    with pytest.warns(UserWarning, match="outside pixels:3"):
        r = rl.evaluate(std_model, x, y, threat, attacks=[cheat], diagnostics=False)
    assert r.robust_accuracy == r.clean_accuracy


# -- defended models: attacked through the view, judged by the deployed model -----------------------
class Quantised(nn.Module):
    """An input quantiser (``levels`` grey levels) in front of a classifier; its BPDA view is the
    identity on the backward pass."""

    def __init__(self, model: nn.Module, levels: int = 16) -> None:
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, x: Tensor) -> Tensor:
        return self.model(torch.round(x * (self.levels - 1)) / (self.levels - 1))

    def spec(self) -> str:
        return f"quantise:{self.levels}"

    def attack_view(self) -> nn.Module:
        outer = self

        class BPDA(nn.Module):
            def forward(self, x: Tensor) -> Tensor:
                q = torch.round(x * (outer.levels - 1)) / (outer.levels - 1)
                return outer.model(x + (q - x).detach())

        return BPDA().eval()

    def naive_view(self) -> nn.Module:
        return self.model


def test_a_quantiser_is_attacked_through_its_bpda_view_and_judged_by_itself(std_model, mnist_test):
    x, y = mnist_test[0][:100], mnist_test[1][:100]
    threat = rl.LpBall("linf", 0.3)
    defended = Quantised(std_model).eval()
    # The deployed forward has zero gradient almost everywhere: plain PGD on it finds nothing.
    direct = PGD(threat, steps=20)(defended, x, y)
    adaptive = rl.evaluate(defended, x, y, threat, attacks=[PGD(threat, steps=20)], diagnostics=False)
    naive = rl.evaluate(defended, x, y, threat, attacks=[PGD(threat, steps=20)], diagnostics=False, view="naive")
    assert float(direct.success.float().mean()) < 0.2  # the masked gradient hides the weakness
    assert adaptive.robust_accuracy < 0.3 * adaptive.clean_accuracy
    assert naive.robust_accuracy > adaptive.robust_accuracy  # transferred points: weaker than BPDA
    # Success is decided by the real quantiser: replaying the broken points through it agrees.
    pts = PGD(threat, steps=20)(defended.attack_view(), x, y)
    judged = defended(pts.x_adv).argmax(1) != y
    assert bool(torch.equal(judged, pts.success))


def test_a_defense_setting_is_part_of_the_run_identity(std_model, mnist_test):
    x, y = mnist_test[0][:10], mnist_test[1][:10]
    t = rl.LpBall("linf", 0.3)
    attacks = resolve_attacks(None, t)
    a = run_identity(Quantised(std_model, 2), x, y, t, attacks, 500, 0)
    b = run_identity(Quantised(std_model, 4), x, y, t, attacks, 500, 0)
    assert a[0] != b[0] and a[1]["model_spec"] == "quantise:2"


def test_todays_lp_run_ids_are_unchanged(at_model, mnist_test):
    """The ids that release 0.1.0 gave these runs (computed before the core changed)."""
    x, y = mnist_test
    t = rl.LpBall("linf", 0.3)
    assert run_identity(at_model, x, y, t, resolve_attacks("pgd", t), 500, 0)[0] == "df111c3dc3162273"
    assert run_identity(at_model, x, y, t, resolve_attacks("standard", t), 500, 0)[0] == "83da80eff05a60ca"
    assert run_identity(at_model, x, y, t, resolve_attacks("square", t), 500, 0)[0] == "8b979e6fb425426c"
    assert run_identity(at_model, x, y, t, resolve_attacks("hsj", t), 500, 0)[0] == "e2d171a8cda227ac"
    t2 = rl.LpBall("l2", 1.5)
    assert run_identity(at_model, x, y, t2, resolve_attacks("fab,cw,deepfool", t2), 500, 3, "bf16")[0] == "f32cf2b33950dde9"
    assert run_identity(at_model, x, y, t2, resolve_attacks("spsa,nes,boundary", t2), 500, 3, "bf16")[0] == "2527911888581092"


# -- rejection --------------------------------------------------------------------------------------
class RejectEverythingOdd(nn.Module):
    """K + 1 scores: the classifier's, and a reject score that wins when the input is bright."""

    rejects = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(x)
        reject = (x.flatten(1).mean(1) - 0.3) * 1000.0
        return torch.cat([logits, reject[:, None]], dim=1)


def test_a_rejected_adversarial_point_is_a_defended_point(std_model, mnist_test):
    x, y = mnist_test[0][:60], mnist_test[1][:60]
    threat = rl.LpBall("linf", 0.3)
    model = RejectEverythingOdd(std_model).eval()

    def brighten(m, xs, ys, target=None):  # misclassifies nothing by itself, only moves into "reject"
        x_adv = (xs + 0.3).clamp(0, 1)
        return AttackResult(x_adv, torch.ones(len(ys), dtype=torch.bool), threat.distance(x_adv, xs))

    with pytest.warns(UserWarning, match="claimed"):
        r = rl.evaluate(model, x, y, threat, attacks=[brighten], diagnostics=False)
    assert bool((model(x).argmax(1) != 10).all())  # clean points are not rejected
    assert bool((model((x + 0.3).clamp(0, 1)).argmax(1) == 10).all())  # ... the brightened ones are
    assert r.robust_accuracy == r.clean_accuracy


# -- certificates -----------------------------------------------------------------------------------
def _linear_model() -> nn.Module:
    torch.manual_seed(0)
    x, y = rl.data.load("digits", split="train")
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return m.eval()


def test_linear_certificates_are_sound_and_stored(tmp_path):
    model = _linear_model()
    x, y = rl.data.load("digits", split="test", n=120)
    threat = rl.LpBall("linf", 0.02)
    db = tmp_path / "runs.db"
    r = rl.evaluate(model, x, y, threat, attacks="apgd-ce-30", certifiers=[LinearExact()], store=db,
                    batch_size=60, diagnostics=False)
    assert r.certified is not None and 0.3 < r.certified_accuracy <= r.robust_accuracy <= r.clean_accuracy
    assert not bool((r.certified & ~r.robust).any())
    assert bool((r.certified <= r.clean_correct).all())
    # The bound is exact away from the box: the worst-case margin is attained by w's dual direction.
    res = LinearExact()(model, x, y, threat)
    w = model[1].weight.detach()
    i = int(res.certified.nonzero()[0])
    logits = model(x[i:i + 1])[0]
    j = int(logits.scatter(0, y[i:i + 1], float("-inf")).argmax())
    assert float(res.bound[i]) <= float(logits[y[i]] - logits[j]) - 0.02 * float((w[y[i]] - w[j]).abs().sum()) + 1e-4
    with rl.Store(db) as s:
        rows = s.certificates(r.run_id)
        assert len(rows) == 120 and sum(row[2] for row in rows) == int(r.certified.sum())
        assert s.runs()[0].summary["certified_accuracy"] == pytest.approx(r.certified_accuracy)
    again = rl.evaluate(model, x, y, threat, attacks="apgd-ce-30", certifiers=[LinearExact()], store=db,
                        batch_size=60, diagnostics=False)
    assert again.resumed_points == 120 and torch.equal(again.certified, r.certified)


class _LyingCertifier:
    name = "liar"

    def __call__(self, model, x, y, threat) -> CertResult:
        n = len(y)
        return CertResult(torch.ones(n, dtype=torch.bool), torch.full((n,), threat.eps), model(x).argmax(1))


def test_a_certified_point_that_breaks_is_an_error(std_model, mnist_test):
    x, y = mnist_test[0][:30], mnist_test[1][:30]
    with pytest.raises(UnsoundCertificate, match="certified and then broken"):
        rl.evaluate(std_model, x, y, rl.LpBall("linf", 0.3), attacks="pgd-10", certifiers=[_LyingCertifier()],
                    diagnostics=False)


# -- per-sample radii ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RelativeBall:
    """Linf with a radius proportional to each input's peak (like a dB budget on audio)."""

    fraction: float
    norm: str = "linf"

    def spec(self) -> str:
        return f"rel:{self.fraction:g}"

    def validate(self, x) -> None:
        rl.LpBall("linf", 0.0).validate(x)

    def radius(self, x: Tensor) -> Tensor:
        return self.fraction * (0.4 + 4 * x.flatten(1).mean(1).float())

    def distance(self, x_adv, x):
        return rl.LpBall("linf", 0.0).distance(x_adv, x)

    def admits(self, x_adv, x):
        return self.distance(x_adv, x) <= self.radius(x) + 1e-5

    def project(self, x_adv, x):
        return rl.LpBall("linf", 0.0).project(x_adv, x, self.radius(x))

    def random_start(self, x, generator=None):
        u = torch.rand(x.shape, generator=generator) * 2 - 1
        return self.project(x + u * self.radius(x)[:, None, None, None], x)


@pytest.mark.parametrize("attack", [lambda t: PGD(t, steps=10), lambda t: APGD(t, steps=10),
                                    lambda t: Square(t, max_queries=50)])
def test_attacks_walk_a_per_sample_radius(std_model, mnist_test, attack):
    x, y = mnist_test[0][:16], mnist_test[1][:16]
    t = RelativeBall(0.3)
    res = attack(t)(std_model, x, y)
    r = t.radius(x)
    d = (res.x_adv - x).flatten(1).abs().amax(1)
    assert bool((d <= r + 1e-5).all())
    assert float(d.max()) > float(r.min()) + 0.02  # the larger radii are used, not just the smallest
    assert int(res.success.sum()) >= 1


# -- bad input the core lets through ------------------------------------------------------------------
def test_a_batch_without_its_channel_axis_names_x(std_model, mnist_test):
    x, y = mnist_test[0][:4].squeeze(1), mnist_test[1][:4]
    for attack in (PGD(rl.LpBall("linf", 0.3), steps=2), APGD(rl.LpBall("linf", 0.3), steps=2)):
        with pytest.raises(ValueError, match=r"^x:"):
            attack(std_model, x, y)


def test_half_precision_inputs_are_refused_by_name(std_model, mnist_test):
    x, y = mnist_test[0][:4].half(), mnist_test[1][:4]
    with pytest.raises(TypeError, match=r"^x: torch.float16"):
        rl.evaluate(std_model, x, y, rl.LpBall("linf", 0.3))


def test_a_model_answering_nan_is_not_a_classifier(mnist_test):
    x, y = mnist_test[0][:8], mnist_test[1][:8]
    nan_model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Lambda(lambda t: t * float("nan"))) \
        if hasattr(nn, "Lambda") else None

    class NaN(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 10), float("nan"))

    with pytest.raises(ValueError, match="model: returned NaN"):
        rl.evaluate(nan_model or NaN(), x, y, rl.LpBall("linf", 0.3))


@pytest.mark.parametrize("seed, err", [("a", TypeError), (1.5, TypeError), (2**70, ValueError), (-1, ValueError)])
def test_bad_seeds_name_the_seed(std_model, mnist_test, seed, err):
    with pytest.raises(err, match="^seed:"):
        rl.evaluate(std_model, mnist_test[0][:4], mnist_test[1][:4], rl.LpBall("linf", 0.3), seed=seed)


def test_threat_specs_parse_through_the_registry():
    assert parse_threat("linf:8/255") == rl.LpBall("linf", 8 / 255)
    assert parse_threat("l2:1.5").spec() == "l2:1.5"
    for bad in ("linf:8/0", "linf:x", "nosuch:1", "linf"):
        with pytest.raises(ValueError, match="^threat:"):
            parse_threat(bad)


def test_the_readme_table_and_the_help_come_from_the_registry():
    from pathlib import Path

    from robustlab.evaluation.registry import ATTACKS, build_attacks, markdown_table

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    start, end = readme.index("<!-- attack-table:start -->"), readme.index("<!-- attack-table:end -->")
    assert readme[start:end].split("\n", 1)[1].strip() == markdown_table().strip()
    with pytest.raises(ValueError) as e:
        build_attacks("nosuch", rl.LpBall("linf", 0.3))
    for entry in ATTACKS:  # every registered name is offered, black-box ones included
        assert entry.usage in str(e.value)
    with pytest.raises(ValueError, match="attacks: cw supports l2"):
        build_attacks("cw", rl.LpBall("linf", 0.3))
