"""Training recipes, the loop's checkpoints and the failure-mode monitor, on real small runs
(scikit-learn digits MLP; a 2000-image MNIST slice for catastrophic overfitting)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import robustlab as rl
from robustlab.attacks import PGD
from robustlab.defenses.training import (ATTA, NFGSM, PGDAT, TRADES, Cyclic, FastAT, GradAlign, GuidedAT, Monitor, Piecewise,
                                         Standard, evaluate_epoch, perturb, ramp, train)
from robustlab.defenses.training.regularized import gradient_misalignment, input_gradient
from robustlab.defenses.training import _store, checkpoint
from robustlab.models.architectures import digits_mlp, mnist_cnn
from robustlab.threats import LpBall

torch.set_num_threads(1)
T01 = LpBall("linf", 0.1)


@pytest.fixture(scope="module")
def digits():
    x, y = rl.data.load("digits", "train")
    return x[:1000], y[:1000], x[1000:1200], y[1000:1200]


@pytest.fixture(scope="module")
def trained(digits):
    x, y, _, _ = digits
    torch.manual_seed(0)
    m = digits_mlp()
    train(m, (x, y), Standard(), epochs=4, batch_size=50, lr=Piecewise(3e-3), seed=0)
    return m


def test_inner_maximisations_raise_their_own_losses(trained, digits) -> None:
    """PGD-AT's points raise the cross-entropy, TRADES' the KL to the clean prediction, and both
    stay in the ball: the attack loop with a callable loss really ascends it."""
    x, y = digits[0][:200], digits[1][:200]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        p_clean = F.softmax(trained(x), 1)

    def kl(logits, yv, tv):
        return F.kl_div(F.log_softmax(logits, 1), p_clean, reduction="none").sum(1)

    start = T01.random_start(x, torch.Generator().manual_seed(1))
    trained.train()  # as inside a training step: perturb runs it in eval mode and restores this
    x_kl = perturb(trained, T01, x, y, g, steps=5, step_size=0.025, loss=kl)
    x_ce = perturb(trained, T01, x, y, g, steps=5, step_size=0.025)
    with torch.no_grad():
        kl_start, kl_adv = kl(trained(start), y, None).mean(), kl(trained(x_kl), y, None).mean()
        ce_clean, ce_adv = F.cross_entropy(trained(x), y), F.cross_entropy(trained(x_ce), y)
    assert kl_adv > 5 * kl_start and kl_adv > 0.1
    assert trained.training and all(p.requires_grad for p in trained.parameters())
    trained.eval()
    assert ce_adv > 2 * ce_clean
    assert bool(T01.admits(x_kl, x).all()) and bool(T01.admits(x_ce, x).all())


def test_pgd_callable_loss_is_the_named_loss(trained, digits) -> None:
    x, y = digits[0][:100], digits[1][:100]

    def ce(logits, yv, tv):
        return F.cross_entropy(logits, yv, reduction="none")

    a = PGD(T01, steps=5, seed=3)(trained, x, y)
    b = PGD(T01, steps=5, seed=3, loss=ce)(trained, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    assert PGD(T01, loss=ce).name == "PGD-40-ce"


def test_adversarial_training_beats_standard_under_attack(digits) -> None:
    """On the same data and budget, PGD-AT's held-out PGD accuracy is far above standard
    training's (a defense that holds, measured by the attack it was not trained on: PGD-10 from
    another seed)."""
    x, y, xv, yv = digits
    accs = {}
    for name, recipe in {"std": Standard(), "at": PGDAT(T01, steps=5)}.items():
        torch.manual_seed(0)
        m = digits_mlp()
        train(m, (x, y), recipe, epochs=6, batch_size=50, lr=Piecewise(3e-3), seed=0)
        accs[name] = evaluate_epoch(m, (xv, yv), T01)
    assert accs["at"][1] > accs["std"][1] + 0.15
    assert accs["at"][0] > 0.8


def _interrupt_at(stop_at):
    """An ``on_step`` that raises KeyboardInterrupt after step ``stop_at`` = (epoch, step)."""
    def on_step(epoch, step, spe, loss):
        if stop_at is not None and (epoch, step) == stop_at:
            raise KeyboardInterrupt
    return on_step


def test_in_process_interrupt_resumes_bit_identically(digits, tmp_path: Path) -> None:
    x, y, xv, yv = digits
    recipe = TRADES(T01, beta=3.0, steps=2, warmup=0.3)

    def run(ck, stop_at=None):
        torch.manual_seed(0)
        m = digits_mlp()
        res = train(m, (x, y), recipe, epochs=3, batch_size=50, lr=Cyclic(5e-3), seed=4, checkpoint=ck,
                    checkpoint_every=3, val=(xv, yv), on_step=_interrupt_at(stop_at))
        return m, res

    ref, ref_res = run(None)
    ck = tmp_path / "c.pt"
    with pytest.raises(KeyboardInterrupt):
        run(ck, stop_at=(1, 8))  # killed after global step 28: the last checkpoint is at 27 = (1, 7)
    m, res = run(ck)
    assert res.resumed_at == (1, 7)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, m.state_dict()[k]), k
    assert [h.pgd_acc for h in res.history] == [h.pgd_acc for h in ref_res.history]
    with pytest.raises(ValueError, match="checkpoint"):  # another recipe may not resume it
        train(digits_mlp(), (x, y), Standard(), epochs=3, batch_size=50, checkpoint=ck)


def test_checkpoint_write_is_atomic(tmp_path: Path) -> None:
    p = tmp_path / "c.pt"
    checkpoint.save_atomic({"a": torch.ones(3)}, p)
    with pytest.raises(Exception):
        checkpoint.save_atomic({"a": lambda: 0}, p)  # fails mid-write (unpicklable)
    assert torch.equal(checkpoint.load(p)["a"], torch.ones(3))
    assert os.listdir(tmp_path) == ["c.pt"]  # no temporary file left behind


def _mnist_slice():
    x, y = rl.data.load("mnist", "train", n=2300)
    return x[:2000], y[:2000], x[2000:], y[2000:]


@pytest.mark.slow
def test_catastrophic_overfitting_is_flagged_stopped_and_rolled_back() -> None:
    """FGSM training at a large step without random start (eps 0.25, lr 5e-3) on a 2000-image
    MNIST slice: after epoch 1 PGD-10 accuracy collapses to ~0 while FGSM accuracy rises."""
    x, y, xv, yv = _mnist_slice()
    threat = LpBall("linf", 0.25)
    torch.manual_seed(0)
    m = mnist_cnn()
    res = train(m, (x, y), FastAT(threat, alpha=0.625, random_start=False), epochs=4, batch_size=50,
                lr=Piecewise(5e-3, ()), seed=0, val=(xv, yv),
                monitor=Monitor(stop=("catastrophic_overfitting",), rollback=True))
    co = [f for f in res.flags if f.kind == "catastrophic_overfitting"]
    assert co and res.stopped
    last = res.history[-1]
    assert last.pgd_acc < 0.03 and last.fgsm_acc > res.history[0].fgsm_acc
    # rolled back: the returned weights are the best epoch's, with its held-out PGD accuracy
    assert res.best_epoch < last.epoch
    best = res.history[res.best_epoch - 1]
    assert evaluate_epoch(m, (xv, yv), threat)[1] == pytest.approx(best.pgd_acc)


@pytest.mark.slow
def test_fast_at_with_random_start_is_not_flagged() -> None:
    """Fast AT done as published (random start, step 2.5 eps here) on the same slice: robust
    accuracy grows, and neither flag fires."""
    x, y, xv, yv = _mnist_slice()
    threat = LpBall("linf", 0.2)
    torch.manual_seed(0)
    m = mnist_cnn()
    res = train(m, (x, y), FastAT(threat, alpha=0.5), epochs=4, batch_size=50, lr=Piecewise(3e-3, ()), seed=0,
                val=(xv, yv), monitor=Monitor(stop=("catastrophic_overfitting", "gradient_masking")))
    assert res.flags == [] and not res.stopped
    assert res.history[-1].pgd_acc > 0.45


def test_nfgsm_points_leave_the_eps_ball_by_one_signed_step(trained, digits) -> None:
    """N-FGSM's training points: noise up to k * eps, one step of alpha on top, no projection to
    the eps ball (so many coordinates end beyond eps), always in the [0, 1] box; the step raises
    the loss over the noise alone; the eps ramp scales all of it."""
    x, y = digits[0][:200], digits[1][:200]
    r = NFGSM(T01, k=2.0)
    trained.train()
    p = r.points(trained, x, y, torch.Generator().manual_seed(0), 0.5)
    noise = LpBall("linf", 0.2).random_start(x, torch.Generator().manual_seed(0))  # same draw
    assert trained.training
    trained.eval()
    d = (p - x).abs()
    assert p.min() >= 0 and p.max() <= 1
    assert d.max() <= 0.3 + 1e-6 and (d > 0.1 + 1e-6).float().mean() > 0.2
    step = (p - noise).abs()
    inside = (noise + 0.1 <= 1) & (noise - 0.1 >= 0)  # no box clipping of the step there
    assert torch.allclose(step[inside], torch.full_like(step[inside], 0.1), atol=1e-6)
    with torch.no_grad():
        assert F.cross_entropy(trained(p), y) > 1.5 * F.cross_entropy(trained(noise), y)
    ramped = NFGSM(T01, k=2.0, warmup=0.5).points(trained, x, y, torch.Generator().manual_seed(0), 0.25)
    assert (ramped - x).abs().max() <= 0.15 + 1e-6
    assert torch.equal(NFGSM(T01, warmup=0.5).points(trained, x, y, torch.Generator(), 0.0), x)
    assert NFGSM(T01).loss(trained, x, y, torch.Generator().manual_seed(0), 0.5).requires_grad
    with pytest.raises(ValueError, match="k:"):
        NFGSM(T01, k=-1.0)
    with pytest.raises(ValueError, match="step_size"):
        NFGSM(T01, alpha=0.0)


def test_nfgsm_checks_cut_the_step_at_the_first_fooling_fraction(trained, digits) -> None:
    """With checks=4 each training point lies on the segment from the noisy point to the full
    step, at the first fraction (1/4, 1/2, 3/4) where the model errs, or at the full step when
    it errs at none of them."""
    x, y = digits[0][:200], digits[1][:200]
    trained.eval()
    p = NFGSM(T01, k=1.0, checks=4).points(trained, x, y, torch.Generator().manual_seed(0), 0.5)
    full = NFGSM(T01, k=1.0).points(trained, x, y, torch.Generator().manual_seed(0), 0.5)
    noise = T01.random_start(x, torch.Generator().manual_seed(0))
    seg = (full - noise).reshape(len(x), -1)
    moved = seg.abs() > 1e-6
    t = ((p - noise).reshape(len(x), -1)[moved] / seg[moved])
    counts = moved.sum(1).tolist()
    fracs = torch.stack([c.median() for c in t.split(counts)])
    assert torch.allclose((fracs * 4).round() / 4, fracs, atol=1e-4)
    with torch.no_grad():
        wrong = {j: trained(noise + j / 4 * (full - noise)).argmax(1) != y for j in (1, 2, 3)}
    for i, f in enumerate(fracs.tolist()):
        j = round(f * 4)
        assert all(not wrong[q][i] for q in range(1, min(j, 4)))
        if j < 4:
            assert wrong[j][i]
    assert 0 < (fracs < 1).sum() < len(x)  # some steps were cut, some were not
    with pytest.raises(ValueError, match="checks"):
        NFGSM(T01, checks=-1)
    # FastAT with checks: FGSM from a random start, projected into the ball, then cut the same way
    pf = FastAT(T01, alpha=0.125, checks=4).points(trained, x, y, torch.Generator().manual_seed(0), 0.5)
    x0 = T01.random_start(x, torch.Generator().manual_seed(0))
    x1 = FastAT(LpBall("linf", 0.125), random_start=False, alpha=0.125).points(trained, x0, y, torch.Generator(), 0.5)
    x1 = T01.project(x1, x)
    assert (pf - x).abs().max() <= 0.1 + 1e-6
    with torch.no_grad():
        for j in (1, 2, 3):
            w = trained(x0 + j / 4 * (x1 - x0)).argmax(1) != y
            first = w & torch.stack([~(trained(x0 + q / 4 * (x1 - x0)).argmax(1) != y) for q in range(1, j)]).all(0) \
                if j > 1 else w
            assert torch.allclose(pf[first], (x0 + j / 4 * (x1 - x0))[first], atol=1e-6)
    with pytest.raises(ValueError, match="checks"):
        FastAT(T01, checks=-2)


def test_masking_is_not_flagged_inside_the_eps_ramp(digits) -> None:
    """An epoch that ends inside the eps ramp carries eps_scale < 1 and is not checked for
    masking (trained at a fraction of eps, FGSM at the full radius is bound to beat PGD less);
    the same figures at full eps are flagged; a collapse is flagged either way."""
    x, y, xv, yv = digits
    res = train(digits_mlp(), (x, y), FastAT(T01, warmup=0.5), epochs=2, batch_size=100, seed=0, val=(xv, yv))
    assert res.history[0].eps_scale == pytest.approx(0.9) and res.history[1].eps_scale == 1.0
    from robustlab.defenses.training import EpochStats

    def row(e, pgd, fgsm, scale):
        return EpochStats(epoch=e, loss=0.1, clean_acc=0.99, pgd_acc=pgd, fgsm_acc=fgsm, seconds=1.0, lr=1e-3,
                          eps_scale=scale)
    m = Monitor()
    assert m.check([row(1, 0.05, 0.7, 0.4)]) == []
    assert [f.kind for f in m.check([row(1, 0.05, 0.7, 1.0)])] == ["gradient_masking"]
    assert [f.kind for f in m.check([row(1, 0.6, 0.7, 0.5), row(2, 0.1, 0.8, 0.9)])] == ["catastrophic_overfitting"]


def test_epoch_rows_go_to_the_store(digits, tmp_path: Path) -> None:
    from robustlab.evaluation.store import Store

    x, y, xv, yv = digits
    with Store(tmp_path / "r.db") as store:
        res = train(digits_mlp(), (x, y), FastAT(T01), epochs=2, batch_size=100, seed=0, val=(xv, yv), store=store)
        rows = _store.read_metrics(store, res.run_id)
        assert [s for s, _ in rows] == [1, 2]
        assert rows[1][1]["pgd_acc"] == res.history[1].pgd_acc
        assert store.run(res.run_id).status == "done"


def test_ramp_and_argument_errors() -> None:
    assert ramp(0.1, 0.2) == pytest.approx(0.5) and ramp(0.5, 0.2) == 1.0 and ramp(0.0, 0.0) == 1.0
    assert Cyclic(1.0, 0.5)(0.25) == pytest.approx(0.5) and Piecewise(1.0)(0.95) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="steps"):
        PGDAT(T01, steps=0)
    with pytest.raises(ValueError, match="beta"):
        TRADES(T01, beta=-1.0)
    with pytest.raises(ValueError, match="warmup"):
        FastAT(T01, warmup=2.0)
    with pytest.raises(ValueError, match="stop"):
        Monitor(stop=("overfit",))
    x, y = torch.rand(10, 1, 8, 8), torch.zeros(10, dtype=torch.int64)
    with pytest.raises(ValueError, match="batch_size"):
        train(digits_mlp(), (x, y), Standard(), epochs=1, batch_size=20)
    with pytest.raises(TypeError, match="recipe"):
        train(digits_mlp(), (x, y), object(), epochs=1, batch_size=5)
    with pytest.raises(TypeError, match="data"):
        train(digits_mlp(), x, Standard(), epochs=1, batch_size=5)


def test_training_curves_render_the_stored_rows(digits, tmp_path: Path) -> None:
    import base64

    from robustlab.defenses.training.curves import training_curves
    from robustlab.evaluation.store import Store

    x, y, xv, yv = digits
    with Store(tmp_path / "r.db") as store:
        res = train(digits_mlp(), (x, y), FastAT(T01), epochs=2, batch_size=100, seed=0, val=(xv, yv), store=store)
        png = base64.b64decode(training_curves(_store.read_metrics(store, res.run_id)))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    with pytest.raises(ValueError, match="rows"):
        training_curves([])


def test_gradalign_penalty_is_zero_for_a_linear_two_class_model_not_for_a_relu_net(digits) -> None:
    """For logits linear in x with two classes, the input gradient of the cross-entropy is
    (p_1 - [y = 1]) (w_1 - w_0): every point of the ball gives the same direction, so GradAlign's
    1 - cos is 0. A ReLU network's gradient turns inside the ball: the penalty is > 0."""
    x, y = digits[0][:200], digits[1][:200]
    y2 = (y >= 5).long()
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    relu = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    noisy = LpBall("linf", 0.3).random_start(x, torch.Generator().manual_seed(0))

    def penalty(m):
        return gradient_misalignment(input_gradient(m, x, y2, create_graph=False),
                                     input_gradient(m, noisy, y2, create_graph=True))

    assert abs(float(penalty(linear).detach())) < 1e-5
    p = penalty(relu)
    assert float(p.detach()) > 1e-3 and p.requires_grad
    with pytest.raises(ValueError, match="lam:"):
        GradAlign(T01, lam=-1.0)
    with pytest.raises(ValueError, match="threat:"):
        GradAlign(LpBall("l2", 1.0))


def test_gradalign_loss_is_the_reference_computation(trained, digits) -> None:
    """GradAlign's loss = CE at the FGSM point of the attack code (perturb, one step, no random
    start) + lam * (1 - mean cosine of per-sample input gradients at x and at the uniform point
    drawn from the recipe's generator), computed here one sample at a time; and the penalty
    reaches the parameters (double backprop): their gradient differs from lam = 0's."""
    x, y = digits[0][:20], digits[1][:20]
    r = GradAlign(T01, lam=0.7)
    trained.train()
    got = r.loss(trained, x, y, torch.Generator().manual_seed(3), 0.5)
    x_adv = r.points(trained, x, y, torch.Generator().manual_seed(3), 0.5)[0]
    assert torch.equal(x_adv, perturb(trained, T01, x, y, torch.Generator(), steps=1, step_size=0.1,
                                      random_start=False))
    noisy = T01.random_start(x, torch.Generator().manual_seed(3))  # the generator's first draw
    cos = []
    for i in range(x.shape[0]):
        grads = []
        for pt in (x[i:i + 1], noisy[i:i + 1]):
            xi = pt.clone().requires_grad_(True)
            grads.append(torch.autograd.grad(F.cross_entropy(trained(xi), y[i:i + 1]), xi)[0].flatten())
        cos.append(F.cosine_similarity(grads[0], grads[1], dim=0))
    with torch.no_grad():
        want = F.cross_entropy(trained(x_adv), y) + 0.7 * (1 - torch.stack(cos).mean())
    assert torch.allclose(got.detach(), want, atol=1e-5)
    params = list(trained.parameters())
    g_with = torch.autograd.grad(got, params)
    g_without = torch.autograd.grad(GradAlign(T01, lam=0.0).loss(trained, x, y, torch.Generator().manual_seed(3), 0.5),
                                    params)
    assert max(float((a - b).abs().max()) for a, b in zip(g_with, g_without)) > 1e-4
    assert torch.equal(GradAlign(T01, warmup=0.5).points(trained, x, y, torch.Generator(), 0.0)[0], x)


def test_guided_at_step_and_loss_are_the_reference_computation(trained, digits) -> None:
    """GuidedAT: the point is one signed step of alpha, from a Bernoulli start of +-noise*eps
    (drawn from the recipe's generator), up the gradient of CE + lam * ||softmax - clean
    softmax||^2, projected to the ball; the loss is the clean CE + lam * the mean distance at
    that point; lam is boosted from boost_at on; and the step raises the guided loss."""
    x, y = digits[0][:50], digits[1][:50]
    r = GuidedAT(T01, lam=2.0, boost=3.0, boost_at=0.5, noise=0.5)
    assert r.weight(0.49) == 2.0 and r.weight(0.5) == 6.0
    trained.train()
    p = r.points(trained, x, y, torch.Generator().manual_seed(5), 0.25)
    assert trained.training
    trained.eval()
    sign = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(5)).float() * 2 - 1
    x0 = T01.project(x + 0.05 * sign, x)
    with torch.no_grad():
        p_clean = F.softmax(trained(x), dim=1)
    xg = x0.clone().requires_grad_(True)
    out = trained(xg)
    guided = F.cross_entropy(out, y, reduction="sum") + 2.0 * (F.softmax(out, dim=1) - p_clean).pow(2).sum()
    g = torch.autograd.grad(guided, xg)[0]
    want = T01.project(x0 + 0.1 * g.sign(), x)
    assert torch.allclose(p, want, atol=1e-6)
    assert (p - x).abs().max() <= 0.1 + 1e-6 and p.min() >= 0 and p.max() <= 1
    with torch.no_grad():
        def guided_at(z):
            o = trained(z)
            return float(F.cross_entropy(o, y) + 2.0 * (F.softmax(o, dim=1) - p_clean).pow(2).sum(1).mean())
        assert guided_at(p) > guided_at(x0)
        trained.train()
        got = r.loss(trained, x, y, torch.Generator().manual_seed(5), 0.25)
        clean = trained(x)
        ref = F.cross_entropy(clean, y) + 2.0 * (F.softmax(trained(p), dim=1) - F.softmax(clean, dim=1)).pow(2).sum(1).mean()
    assert torch.allclose(got, ref, atol=1e-5)
    assert torch.equal(GuidedAT(T01, warmup=0.5).points(trained, x, y, torch.Generator(), 0.0), x)
    for bad, field in (({"lam": -1.0}, "lam:"), ({"noise": float("nan")}, "noise:"), ({"boost_at": 2.0}, "boost_at:")):
        with pytest.raises(ValueError, match=field):
            GuidedAT(T01, **bad)


def test_atta_starts_each_visit_at_the_last_visits_point(trained, digits) -> None:
    x, y, _, _ = digits
    recipe = ATTA(T01, steps=1, step_size=0.03)
    g = torch.Generator().manual_seed(0)
    memory = recipe.init_memory(x, g)
    assert memory.dtype == torch.int8 and memory.shape == x.shape
    assert memory.float().abs().max() <= 127 and memory.float().std() > 50  # uniform in the ball
    idx = torch.arange(10, 30)
    xb, yb = x[idx], y[idx]
    start = T01.project(xb + memory[idx].float() * (0.1 / 127), xb)
    pts = recipe.points(trained, xb, yb, g, 0.5, memory=memory, index=idx)
    # one signed step of 0.03 from the carried start, projected: the PGD step, not a fresh start
    grad = torch.func.grad(lambda z: F.cross_entropy(trained(z), yb, reduction="sum"))(start)
    assert torch.allclose(pts, T01.project(start + 0.03 * grad.sign(), xb), atol=1e-6)
    # the memory now holds that point (to 1/127 of eps); other rows are untouched
    assert torch.allclose(memory[idx].float() * (0.1 / 127), pts - xb, atol=0.1 / 254 + 1e-6)
    before = memory.clone()
    recipe.points(trained, xb, yb, g, 0.5, memory=memory, index=idx)
    assert torch.equal(memory[30:], before[30:]) and not torch.equal(memory[idx], before[idx])


def test_atta_resumes_bit_identically_memory_included(digits, tmp_path: Path) -> None:
    x, y, xv, yv = digits
    recipe = ATTA(T01, steps=1, warmup=0.2)

    def run(ck, stop_at=None):
        torch.manual_seed(0)
        m = digits_mlp()
        train(m, (x, y), recipe, epochs=3, batch_size=50, lr=Piecewise(3e-3), seed=2, checkpoint=ck,
              checkpoint_every=5, on_step=_interrupt_at(stop_at))
        return m

    ref = run(None)
    ck = tmp_path / "a.pt"
    with pytest.raises(KeyboardInterrupt):
        run(ck, stop_at=(1, 13))  # the last checkpoint is at global step 30 = (1, 10)
    assert checkpoint.load(ck)["memory"].shape == x.shape
    m = run(ck)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, m.state_dict()[k]), k


def test_atta_refuses_several_processes(digits, monkeypatch) -> None:
    from robustlab.defenses.training import loop

    x, y, _, _ = digits
    monkeypatch.setattr(loop, "_dist", lambda: (0, 2))
    with pytest.raises(ValueError, match="recipe: ATTA .* one process"):
        train(digits_mlp(), (x, y), ATTA(T01), epochs=1, batch_size=50)


def test_command_line_recipes_take_their_own_step_defaults(tmp_path: Path) -> None:
    from robustlab.defenses.training.job import JobSpec, build_recipe

    def spec(recipe, **kw):
        return JobSpec(recipe=recipe, data="digits", arch="digits-mlp", out=tmp_path / "m.safetensors", **kw)

    assert build_recipe(spec("atta")) == ATTA(LpBall("linf", 0.3), steps=1)
    assert build_recipe(spec("pgdat")).steps == 10 and build_recipe(spec("trades")).steps == 10
    assert build_recipe(spec("atta", steps=2, step_size=0.05, warmup=0.2)) == ATTA(LpBall("linf", 0.3), 2, 0.05, 0.2)
    with pytest.raises(ValueError, match="steps"):
        build_recipe(spec("atta", steps=0))
