"""1-Lipschitz layers and the margin certificate: the claimed constant is never exceeded by
exact operator norms, random pairs or pairs found by gradient ascent on the ratio; the shipped
mnist-lip certifies and its certificates survive PGD."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import jacrev

import robustlab as rl
from robustlab.certify.lipschitz import (
    Lipschitz,
    lipschitz_constant,
    margin_radius,
    pairwise_constants,
)
from robustlab.defenses.lipschitz_training import LipschitzMargin
from robustlab.models.lipschitz import (
    ARCHITECTURES,
    AOLConv2d,
    AOLLinear,
    CayleyConv2d,
    LipschitzNet,
    MaxMin,
    SLLConv2d,
    SLLLinear,
    load_mnist_lip,
    mnist_lip,
    mnist_lip_cayley,
    mnist_lip_conv,
    mnist_lip_sll,
)
from robustlab.threats import LpBall

torch.set_num_threads(1)


def _scramble(module: nn.Module, seed: int) -> nn.Module:
    """Replace every weight by a heavy-tailed random one: the bound must hold for any weights,
    not only the orthogonal initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * torch.rand(p.shape, generator=g).pow(-1.5))
    return module


@pytest.mark.parametrize("shape", [(10, 30), (30, 10), (64, 64), (5, 200)])
def test_aol_linear_spectral_norm_at_most_one(shape):
    for seed in range(3):
        layer = _scramble(AOLLinear(shape[1], shape[0]), seed)
        assert float(torch.linalg.matrix_norm(layer.effective_weight().detach(), ord=2)) <= 1 + 1e-5


@pytest.mark.parametrize("cin,cout,k", [(1, 4, 3), (3, 8, 3), (8, 3, 5), (4, 4, 1)])
def test_aol_conv_exact_operator_norm_at_most_one(cin, cout, k):
    for seed in range(2):
        conv = _scramble(AOLConv2d(cin, cout, k), seed)
        conv.bias.data.zero_()
        x = torch.zeros(cin, 7, 7)
        jac = jacrev(lambda v: conv(v[None])[0])(x).reshape(cout * 49, cin * 49)  # the conv as a matrix
        norm = float(torch.linalg.matrix_norm(jac.detach(), ord=2))
        assert norm <= 1 + 1e-5
        assert norm > 0.05  # and the rescaling is not vacuous


@pytest.mark.parametrize("cin,cout,size,k", [(4, 4, 6, 3), (3, 8, 5, 3), (8, 3, 7, 3), (2, 2, 4, 1)])
def test_cayley_conv_exact_operator_norm(cin, cout, size, k):
    """The Cayley convolution as a matrix (its Jacobian): largest singular value never above its
    stated (measured) constant, for any weights (heavy-tailed ones make I + A ill-conditioned
    and the float32 solve less exact: the measured constant then exceeds 1 and says so); at
    the initialisation the constant is 1 to float precision and the map is orthogonal (all
    singular values 1) when it does not drop channels."""
    for seed in range(3):
        conv = CayleyConv2d(cin, cout, size, k)
        if seed:
            _scramble(conv, seed)
        conv.bias.data.zero_()
        jac = jacrev(lambda v: conv(v[None])[0])(torch.zeros(cin, size, size))
        s = torch.linalg.svdvals(jac.reshape(cout * size * size, cin * size * size).detach().double())
        assert float(s.max()) <= conv.lipschitz * (1 + 1e-6)
        assert 1.0 <= conv.lipschitz <= 1.01
        if not seed:
            assert conv.lipschitz <= 1 + 1e-5
            if cout >= cin:
                assert float(s.min()) >= 1 - 1e-5  # an isometry: gradient-norm preserving
    with pytest.raises(ValueError, match="x"):
        CayleyConv2d(2, 2, 5)(torch.randn(1, 2, 6, 6))
    with pytest.raises(ValueError, match="kernel_size"):
        CayleyConv2d(2, 2, 2, 3)


@pytest.mark.parametrize("c,inner,k", [(3, 5, 3), (4, 4, 3), (6, 2, 5), (2, 3, 1)])
def test_sll_conv_exact_operator_norm_at_most_one(c, inner, k):
    """The SLL residual convolution is nonlinear: its Jacobian (at random points, for
    heavy-tailed random weights) has spectral norm <= 1, and exactly 1 along directions where
    the ReLUs are off (the identity path), so the bound is tight, not vacuous."""
    for seed in range(3):
        layer = _scramble(SLLConv2d(c, inner, k), seed)
        v = torch.randn(c, 6, 6, generator=torch.Generator().manual_seed(seed))
        jac = jacrev(lambda u: layer(u[None])[0])(v).reshape(c * 36, c * 36)
        assert float(torch.linalg.matrix_norm(jac.detach().double(), ord=2)) <= 1 + 1e-5
    for seed in range(3):
        layer = _scramble(SLLLinear(20, 7), seed)
        jac = jacrev(layer)(torch.randn(4, 20)).reshape(80, 80)  # block-diagonal over the batch
        assert float(torch.linalg.matrix_norm(jac.detach().double(), ord=2)) <= 1 + 1e-5
    with pytest.raises(ValueError, match="kernel_size"):
        SLLConv2d(2, 2, 2)


def test_random_sll_network_ratio_never_exceeds_constant():
    torch.manual_seed(0)
    model = _scramble(mnist_lip_sll((4, 8), 16, blocks=2), 9)
    assert model.lipschitz == 1.0
    x = torch.rand(8, 1, 28, 28)
    assert _max_ratio(model, x, steps=30, seed=10) <= 1 + 1e-4


def test_random_cayley_network_ratio_never_exceeds_constant():
    torch.manual_seed(0)
    model = _scramble(mnist_lip_cayley((8, 8), 16), 4)
    assert 1.0 <= model.lipschitz <= 1.01
    x = torch.rand(8, 1, 28, 28)
    assert _max_ratio(model, x, steps=30, seed=5) <= model.lipschitz * (1 + 1e-4)


def test_maxmin_and_network_constant():
    m = MaxMin()
    x, x2 = torch.randn(500, 8), torch.randn(500, 8)
    assert bool(((m(x) - m(x2)).norm(dim=1) <= (x - x2).norm(dim=1) + 1e-6).all())
    assert sorted(m(torch.tensor([[3.0, -1.0, 1.0, 2.0]]))[0].tolist()) == [-1.0, 1.0, 2.0, 3.0]
    assert mnist_lip(width=32, depth=2).lipschitz == 1.0
    with pytest.raises(TypeError, match="module"):
        LipschitzNet(nn.Flatten(), nn.Linear(4, 2)).lipschitz
    with pytest.raises(ValueError, match="x"):
        m(torch.randn(2, 3))


def _max_ratio(model: nn.Module, x: torch.Tensor, steps: int, seed: int) -> float:
    """Largest |f(x) - f(x')| / |x - x'| over random pairs at several scales, then gradient
    ascent on the ratio from each pair (the adversarial pairs)."""
    g = torch.Generator().manual_seed(seed)
    best = 0.0
    for scale in (1e-3, 0.1, 1.0, 5.0):
        d = torch.randn(x.shape, generator=g) * scale
        x2 = (x + d).requires_grad_(True)
        opt = torch.optim.Adam([x2], lr=0.01 * scale)
        for _ in range(steps):
            ratio = (model(x2) - model(x)).norm(dim=1) / (x2 - x).flatten(1).norm(dim=1)
            best = max(best, float(ratio.detach().max()))
            opt.zero_grad()
            (-ratio.sum()).backward()
            opt.step()
    return best


def test_random_network_ratio_never_exceeds_constant():
    torch.manual_seed(0)
    model = _scramble(mnist_lip(width=64, depth=2), 1)
    x = torch.rand(16, 1, 28, 28)
    assert _max_ratio(model, x, steps=30, seed=0) <= model.lipschitz * (1 + 1e-4)


def test_random_conv_network_ratio_never_exceeds_constant():
    """The convolutional architecture (AOL convs, MaxMin, PixelUnshuffle, AOL dense) with
    scrambled weights: no random or gradient-ascent pair above its claimed constant."""
    torch.manual_seed(0)
    model = _scramble(mnist_lip_conv((8, 8), 16), 2)
    assert model.lipschitz == 1.0
    x = torch.rand(8, 1, 28, 28)
    ratio = _max_ratio(model, x, steps=30, seed=3)
    assert ratio <= model.lipschitz * (1 + 1e-4)
    with pytest.raises(ValueError, match="channels"):
        mnist_lip_conv((7, 8), 16)


def _max_pair_ratio(model: nn.Module, x: torch.Tensor, steps: int, seed: int) -> float:
    """Largest |delta(z_i - z_j)| / (K_ij |delta x|) over classes i != j, random pairs at several
    scales and gradient ascent on it from each pair."""
    k = pairwise_constants(model).float()
    off = ~torch.eye(k.shape[0], dtype=torch.bool)
    g = torch.Generator().manual_seed(seed)
    best = 0.0
    z0 = model(x).detach()
    for scale in (1e-3, 0.1, 1.0, 5.0):
        x2 = (x + torch.randn(x.shape, generator=g) * scale).requires_grad_(True)
        opt = torch.optim.Adam([x2], lr=0.01 * scale)
        for _ in range(steps):
            dz = model(x2) - z0  # (N, K)
            pair = (dz[:, :, None] - dz[:, None, :]).abs()[:, off] / k[off]  # (N, K(K-1))
            ratio = pair.amax(dim=1) / (x2 - x).flatten(1).norm(dim=1)
            best = max(best, float(ratio.detach().max()))
            opt.zero_grad()
            (-ratio.sum()).backward()
            opt.step()
    return best


@pytest.mark.parametrize("build", [lambda: mnist_lip(width=64, depth=2), lambda: mnist_lip_conv((8, 8), 16)])
def test_pairwise_constants_hold_and_are_never_looser(build):
    """|delta(z_i - z_j)| <= K_ij |delta x| over random and gradient-ascent pairs, for scrambled
    weights; K_ij <= sqrt(2) L, and the per-pair radius is never below the uniform one."""
    torch.manual_seed(0)
    model = _scramble(build(), 6)
    k = pairwise_constants(model)
    assert k.shape == (10, 10) and bool((k <= math.sqrt(2) * model.lipschitz + 1e-12).all())
    assert float(k.diagonal().abs().max()) < 1e-6
    assert float(k[~torch.eye(10, dtype=torch.bool)].min()) < math.sqrt(2) * 0.999  # tighter somewhere
    x = torch.rand(8, 1, 28, 28)
    assert _max_pair_ratio(model, x, steps=30, seed=7) <= 1 + 1e-4
    z = model(x).detach()
    y = z.argmax(1)
    assert bool((margin_radius(z, y, 1.0, k) >= margin_radius(z, y, 1.0) - 1e-9).all())


def test_certifier_uses_pairwise_constants_and_the_margin_loss_their_offsets():
    torch.manual_seed(0)
    model = _scramble(mnist_lip(width=32, depth=1), 8)
    x = torch.rand(6, 1, 28, 28)
    z = model(x).detach().double()
    y = z.argmax(1)
    k = pairwise_constants(model)
    expect = torch.tensor(
        [min(float((z[i, y[i]] - z[i, j]) / k[y[i], j]) for j in range(10) if j != int(y[i])) for i in range(6)],
        dtype=torch.float64)
    res = Lipschitz()(model, x, y, LpBall("l2", 0.01))
    assert torch.allclose(res.radius, expect)
    assert torch.allclose(res.bound, torch.tensor(
        [min(float(z[i, y[i]] - z[i, j] - k[y[i], j] * 0.01) for j in range(10) if j != int(y[i])) for i in range(6)],
        dtype=torch.float64))
    # the pairwise loss equals the uniform one when every pair constant is sqrt(2) L
    class Uniform(nn.Module):
        lipschitz = 1.0
        def forward(self, v):
            return v
        def pairwise_lipschitz(self):
            return math.sqrt(2) * (1 - torch.eye(4, dtype=torch.float64))
    v, t = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    g = torch.Generator()
    a = LipschitzMargin(1.5, 0.5, pairwise=True).loss(Uniform(), v, t, g, 0.0)
    b = LipschitzMargin(1.5, 0.5).loss(Uniform(), v, t, g, 0.0)
    assert torch.allclose(a, b) and LipschitzMargin(1.5, 0.5, pairwise=True).spec().endswith("pairwise=True")


def test_zoo_loader_builds_the_named_architecture():
    class Entry:
        architecture = "mnist_lip_conv"
    conv = load_mnist_lip(Entry(), mnist_lip_conv().state_dict())
    assert any(isinstance(m, AOLConv2d) for m in conv) and conv.lipschitz == 1.0
    Entry.architecture = "mnist_lip"
    assert not any(isinstance(m, AOLConv2d) for m in load_mnist_lip(Entry(), None))
    Entry.architecture = "mnist_lip_sll_wide"  # a configured builder: dense 512, three SLL blocks a stage
    wide = load_mnist_lip(Entry(), ARCHITECTURES["mnist_lip_sll_wide"]().state_dict())
    assert [m.weight.shape for m in wide if isinstance(m, SLLLinear)] == [(512, 512)] * 3
    with pytest.raises(RuntimeError):  # the default SLL net's weights do not fit it
        load_mnist_lip(Entry(), mnist_lip_sll().state_dict())
    Entry.architecture = "mnist_lip_sll_c24"  # wider convolutions: 24 then 48 channels
    c24 = load_mnist_lip(Entry(), ARCHITECTURES["mnist_lip_sll_c24"]().state_dict())
    assert [m.weight.shape[0] for m in c24 if isinstance(m, SLLConv2d)] == [24, 24, 48, 48]
    Entry.architecture = "resnet"
    with pytest.raises(ValueError, match="entry"):
        load_mnist_lip(Entry(), None)


class _NoPairs(nn.Module):
    """A 1-Lipschitz model that states only its global constant (no per-pair constants)."""

    lipschitz = 1.0

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_certifier_formula_and_errors():
    model = _NoPairs(mnist_lip(width=32, depth=1))
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8)
    res = Lipschitz()(model, x, y, LpBall("l2", 0.01))
    z = model(x).detach().double()
    top = z.topk(2, dim=1).values
    right = z.argmax(1) == y
    expect = torch.where(right, (top[:, 0] - top[:, 1]) / math.sqrt(2), torch.zeros(8, dtype=torch.float64))
    assert torch.allclose(res.radius, expect)
    assert res.certified.tolist() == (right & (expect > 0.01 * (1 + 1e-5))).tolist()
    assert res.forward_calls == 8
    with pytest.raises(TypeError, match="model"):
        Lipschitz()(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), x, y, LpBall("l2", 0.1))
    with pytest.raises(ValueError, match="batch_size"):
        Lipschitz(batch_size=0)
    lin = Lipschitz()(model, x, y, LpBall("linf", 0.001))  # through the L2 ball of radius 0.028
    assert lin.certified.tolist() == (right & (expect > 0.028 * (1 + 1e-5))).tolist()
    assert lipschitz_constant(model) == 1.0


@pytest.mark.slow
def test_shipped_mnist_lip_constant_holds_and_certificates_survive_pgd():
    model = rl.models.load("mnist-lip")
    assert model.lipschitz == 1.0
    x, y = rl.data.load("mnist", "test", n=100)
    ratio = _max_ratio(model, x[:16], steps=15, seed=1)
    assert ratio <= model.lipschitz * (1 + 1e-4)
    assert _max_pair_ratio(model, x[:8], steps=15, seed=2) <= 1 + 1e-4  # the per-pair constants it certifies with
    assert ratio > 0.1  # the trained net uses its budget: the constant is not vacuous (0.27 measured)
    threat = LpBall("l2", 1.58)
    cert = Lipschitz()(model, x, y, threat)
    assert float((model(x).argmax(1) == y).float().mean()) >= 0.9
    assert float(cert.certified.float().mean()) >= 0.3
    adv = rl.attacks.PGD(threat, steps=30, restarts=1, loss="margin", seed=0)(model, x, y)
    assert not bool((adv.success & cert.certified).any()), "a certified point was broken"
    assert bool(adv.success.any())  # the attack does break uncertified points
