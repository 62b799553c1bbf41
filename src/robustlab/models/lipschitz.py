"""Networks that are 1-Lipschitz in L2 by construction, so a forward pass certifies.

Every layer here has an L2 -> L2 Lipschitz constant <= 1 by a proof, not by an estimate:

* ``AOLLinear`` / ``AOLConv2d``: almost-orthogonal layers (Prach & Lampert, ECCV 2022). The
  weight W is used as ``W diag(d)`` with ``d_i = (sum_j |W^T W|_ij)^(-1/2)``; then
  ``||W diag(d)||_2 <= 1`` for every W (Theorem 1 there), whatever training does. For the
  convolution the row sums of |P^T P| (P the convolution as a matrix) are bounded by the
  entries of the kernel's self-correlation, one rescaling per input channel; stride 1, zero
  "same" padding (boundary truncation only drops terms, so the bound still holds).
* ``CayleyConv2d``: an exactly orthogonal circular convolution (Trockman & Kolter, ICLR 2021):
  in the Fourier domain each frequency's channel matrix is the Cayley transform
  Q = (I + A)^-1 (I - A) of a skew-Hermitian A, so the whole map is orthogonal (Parseval); with
  fewer output than input channels its rows are a subset of Q's, norm <= 1. Float error: the
  layer's ``lipschitz`` is not assumed, it is the measured largest singular value (float64 SVD)
  of the Q its forward uses, never below 1.
* ``SLLConv2d``: an SDP-based Lipschitz residual layer (Araujo et al., ICLR 2023),
  h(x) = x - 2 P^T T^-1 relu(P x + b) with P a stride-1 'same' convolution and T diagonal with
  T_oo = sum_o' |P P^T|_oo' (row sums bounded by the kernel's self-correlation), so T >= P P^T and
  h is 1-Lipschitz (their Theorem 3 with q = 1): a residual block, identity at P = 0.
* ``MaxMin``: sorts pairs of channels (GroupSort with groups of 2, Anil et al. 2019): a
  permutation of each pair, 1-Lipschitz and gradient-norm preserving.
* ``nn.PixelUnshuffle`` and ``nn.Flatten`` are permutations; ``Center`` subtracts a constant.

``LipschitzNet`` (a Sequential) states its constant as ``model.lipschitz``: the product of its
layers' constants, and refuses layers it has no proof for. Input (N, C, H, W) in [0, 1],
output (N, K) logits; the top-2 margin m certifies every L2 radius below m / (sqrt(2) * L), and
``pairwise_lipschitz()`` gives the tighter per-pair constants of the last layer.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _aol_scale(gram_abs_rowsum: Tensor) -> Tensor:
    return gram_abs_rowsum.clamp_min(1e-12).rsqrt()


class AOLLinear(nn.Module):
    """y = W diag(d) x + b with d from |W^T W| row sums: ||W diag(d)||_2 <= 1.

    Input (N, in_features), output (N, out_features)."""

    lipschitz = 1.0

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.orthogonal_(self.weight)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def effective_weight(self) -> Tensor:
        w = self.weight
        d = _aol_scale((w.T @ w).abs().sum(dim=1))  # (in,)
        return w * d[None, :]

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class AOLConv2d(nn.Module):
    """A stride-1, 'same'-padded convolution rescaled per input channel so that its L2
    operator norm is <= 1. Input (N, in_channels, H, W), output (N, out_channels, H, W);
    kernel_size odd."""

    lipschitz = 1.0

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size: must be odd (same padding), got {kernel_size}")
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        # identity-like init: the centre tap of an orthogonal matrix
        with torch.no_grad():
            self.weight.zero_()
            centre = torch.empty(out_channels, in_channels)
            nn.init.orthogonal_(centre)
            self.weight[:, :, self.padding, self.padding] = centre
            self.weight.add_(1e-3 * torch.randn_like(self.weight))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def effective_weight(self) -> Tensor:
        k = self.weight  # (O, I, kh, kw)
        kt = k.transpose(0, 1)  # (I, O, kh, kw)
        # self-correlation M[i, j, s] = sum_o sum_u K[o, i, u + s] K[o, j, u]: (I, I, 2k-1, 2k-1)
        m = F.conv2d(kt, kt, padding=k.shape[-1] - 1)
        d = _aol_scale(m.abs().sum(dim=(1, 2, 3)))  # (I,)
        return k * d[None, :, None, None]

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, padding=self.padding)


class CayleyConv2d(nn.Module):
    """An orthogonal circular convolution on (size x size) maps: y = irfft2(Q(f) rfft2(x)) + b
    with Q(f) = (I + A(f))^-1 (I - A(f)), A(f) = W(f) - W(f)^H, W(f) the 2-D FFT of a
    ``kernel_size`` kernel over max(in, out) channels; Q(f) truncated to (out, in).

    Input (N, in_channels, size, size), output (N, out_channels, size, size). All singular
    values are 1 when in == out (the map is orthogonal: gradient-norm preserving); <= 1
    otherwise. The Cayley transform of each frequency's 64 x 64 (or smaller) matrix costs one
    complex solve per frequency and forward pass, cheap on 14 x 14 and 7 x 7 maps.
    """

    def __init__(self, in_channels: int, out_channels: int, size: int, kernel_size: int = 3,
                 bias: bool = True) -> None:
        super().__init__()
        if min(in_channels, out_channels, size, kernel_size) < 1 or kernel_size > size:
            raise ValueError(f"in_channels/out_channels/size/kernel_size: must be >= 1 with kernel_size <= size, "
                             f"got {in_channels}, {out_channels}, {size}, {kernel_size}")
        self.in_channels, self.out_channels, self.size = in_channels, out_channels, size
        c = max(in_channels, out_channels)
        self.weight = nn.Parameter(torch.empty(c, c, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def q(self) -> Tensor:
        """Q per rfft frequency: (size * (size // 2 + 1), out, in), complex64."""
        c = self.weight.shape[0]
        wf = torch.fft.rfft2(self.weight, s=(self.size, self.size))  # (c, c, size, size//2+1)
        wf = wf.permute(2, 3, 0, 1).reshape(-1, c, c)
        a = wf - wf.conj().transpose(-1, -2)
        eye = torch.eye(c, dtype=a.dtype)
        q = torch.linalg.solve(eye + a, eye - a)
        return q[:, :self.out_channels, :self.in_channels]

    @property
    def lipschitz(self) -> float:
        """The measured operator norm: max over frequencies of Q's largest singular value (float64
        SVD of the Q the forward uses), at least 1."""
        with torch.no_grad():
            s = torch.linalg.svdvals(self.q().to(torch.complex128))
        return max(1.0, float(s.max()))

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        if (c, h, w) != (self.in_channels, self.size, self.size):
            raise ValueError(f"x: expected (N, {self.in_channels}, {self.size}, {self.size}), got {tuple(x.shape)}")
        xf = torch.fft.rfft2(x).permute(2, 3, 1, 0).reshape(-1, c, n)  # (F, in, N)
        yf = (self.q() @ xf).reshape(h, w // 2 + 1, self.out_channels, n).permute(3, 2, 0, 1)
        y = torch.fft.irfft2(yf, s=(h, w))
        return y if self.bias is None else y + self.bias[None, :, None, None]


class SLLConv2d(nn.Module):
    """h(x) = x - 2 P^T diag(t)^-1 relu(P x + b): a 1-Lipschitz residual convolution (SLL).

    P: a stride-1, 'same'-padded convolution from ``channels`` to ``inner`` channels (kernel
    ``kernel_size``, odd), P^T its transpose. t_o = sum over o' and offsets s of |M[o, o', s]|,
    M the kernel's self-correlation over input channels and taps, which bounds the row sums
    of P P^T, so diag(t) >= P P^T. Input and output (N, channels, H, W)."""

    lipschitz = 1.0

    def __init__(self, channels: int, inner: int | None = None, kernel_size: int = 3) -> None:
        super().__init__()
        inner = channels if inner is None else inner
        if kernel_size % 2 != 1 or min(channels, inner) < 1:
            raise ValueError(f"channels/inner/kernel_size: need >= 1 channels and an odd kernel, got "
                             f"{channels}, {inner}, {kernel_size}")
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.empty(inner, channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(inner))

    def scale(self) -> Tensor:
        """t^-1 per inner channel: (inner,)."""
        k = self.weight  # (O, I, kh, kw)
        m = F.conv2d(k, k, padding=k.shape[-1] - 1)  # (O, O, 2k-1, 2k-1): sum_i sum_u K[o,i,u+s] K[o',i,u]
        return m.abs().sum(dim=(1, 2, 3)).clamp_min(1e-12).reciprocal()

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(F.conv2d(x, self.weight, self.bias, padding=self.padding))
        h = h * self.scale()[None, :, None, None]
        return x - 2.0 * F.conv_transpose2d(h, self.weight, padding=self.padding)


class SLLLinear(nn.Module):
    """h(x) = x - 2 W^T diag(t)^-1 relu(W x + b), t_o = sum_o' |W W^T|_oo': a 1-Lipschitz
    residual dense layer (SLL, Araujo et al. 2023). W: (inner, features). Input and output
    (N, features)."""

    lipschitz = 1.0

    def __init__(self, features: int, inner: int | None = None) -> None:
        super().__init__()
        inner = features if inner is None else inner
        if min(features, inner) < 1:
            raise ValueError(f"features/inner: must be >= 1, got {features}, {inner}")
        self.weight = nn.Parameter(torch.empty(inner, features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(inner))

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        t = (w @ w.T).abs().sum(dim=1).clamp_min(1e-12)
        return x - 2.0 * F.linear(F.relu(F.linear(x, w, self.bias)) / t, w.T)


class MaxMin(nn.Module):
    """Splits the channel dimension (dim 1) in halves a, b and returns cat(max(a, b), min(a, b))."""

    lipschitz = 1.0

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] % 2:
            raise ValueError(f"x: MaxMin needs an even number of channels, got {x.shape[1]}")
        a, b = x.chunk(2, dim=1)
        return torch.cat([torch.maximum(a, b), torch.minimum(a, b)], dim=1)


class Center(nn.Module):
    """x - mean (a constant shift: Lipschitz constant exactly 1)."""

    lipschitz = 1.0

    def __init__(self, mean: float) -> None:
        super().__init__()
        self.mean = float(mean)

    def forward(self, x: Tensor) -> Tensor:
        return x - self.mean


_ISOMETRIES = (nn.Flatten, nn.PixelUnshuffle, nn.PixelShuffle, nn.Identity)


def layer_lipschitz(module: nn.Module) -> float:
    """The proven L2 Lipschitz constant of one layer; TypeError for a layer without a proof."""
    if isinstance(module, _ISOMETRIES):
        return 1.0
    c = getattr(module, "lipschitz", None)
    if c is None:
        raise TypeError(f"module: no proven Lipschitz constant for {type(module).__name__}")
    return float(c)


class LipschitzNet(nn.Sequential):
    """A Sequential of layers with proven constants; ``lipschitz`` is their product (L2 -> L2)."""

    @property
    def lipschitz(self) -> float:
        return math.prod(layer_lipschitz(m) for m in self)

    def pairwise_lipschitz(self) -> Tensor | None:
        """(K, K) float64 tensor of the constants of the logit differences, or None when the
        last layer is not an ``AOLLinear``.

        With body h (all layers but the last, constant L_body) and last layer z = W h + b,
        z_i - z_j = (w_i - w_j) . h + (b_i - b_j) is ||w_i - w_j|| L_body Lipschitz (GloRo,
        Leino et al. 2021). Returned as min(||w_i - w_j|| L_body, sqrt(2) L), never looser than
        the uniform sqrt(2) L; differentiable in the last layer's weight (margin training)."""
        last = self[-1]
        if not isinstance(last, AOLLinear):
            return None
        body = math.prod(layer_lipschitz(m) for m in list(self)[:-1])
        w = last.effective_weight().double()
        k = torch.cdist(w, w) * body
        return k.clamp(max=math.sqrt(2.0) * body * layer_lipschitz(last))


def mnist_lip(width: int = 512, depth: int = 3) -> LipschitzNet:
    """The shipped ``mnist-lip`` architecture: a 1-Lipschitz MaxMin MLP.

    Input (N, 1, 28, 28) in [0, 1]; output (N, 10) logits; ``lipschitz == 1``. ``depth``
    hidden AOL layers of ``width`` units; a dense network because the Gram rescaling of a dense
    layer is one matrix product, cheap enough to train on a CPU.
    """
    layers: list[nn.Module] = [Center(0.1307), nn.Flatten(), AOLLinear(784, width), MaxMin()]
    for _ in range(depth - 1):
        layers += [AOLLinear(width, width), MaxMin()]
    layers.append(AOLLinear(width, 10))
    return LipschitzNet(*layers)


def _check_widths(channels: tuple[int, int], dense: int) -> tuple[int, int]:
    """(c1, c2) after checking that both and ``dense`` are even and >= 2 (MaxMin halves them)."""
    c1, c2 = channels
    if min(c1, c2, dense) < 2 or c1 % 2 or c2 % 2 or dense % 2:
        raise ValueError(f"channels/dense: must be even and >= 2, got {channels}, {dense}")
    return c1, c2


def mnist_lip_conv(channels: tuple[int, int] = (16, 32), dense: int = 256) -> LipschitzNet:
    """A 1-Lipschitz convolutional network for MNIST (``mnist-lip`` before the SLL net; the
    ``mnist-lip-aol`` plan of ``scripts/train_certified.py``).

    Input (N, 1, 28, 28) in [0, 1]; output (N, 10) logits; ``lipschitz == 1``. Downsampling
    is invertible (``nn.PixelUnshuffle(2)``, a permutation of the pixels into channels), so no
    layer shrinks distances except by its own AOL rescaling:

        centre -> unshuffle 2 (4 x 14 x 14) -> AOLConv 3x3 c1, MaxMin -> AOLConv 3x3 c1, MaxMin
        -> unshuffle 2 (4 c1 x 7 x 7) -> AOLConv 3x3 c2, MaxMin -> flatten (c2 * 49)
        -> AOLLinear dense, MaxMin -> AOLLinear 10
    """
    c1, c2 = _check_widths(channels, dense)
    return LipschitzNet(
        Center(0.1307), nn.PixelUnshuffle(2),
        AOLConv2d(4, c1), MaxMin(), AOLConv2d(c1, c1), MaxMin(),
        nn.PixelUnshuffle(2),
        AOLConv2d(4 * c1, c2), MaxMin(),
        nn.Flatten(), AOLLinear(c2 * 49, dense), MaxMin(), AOLLinear(dense, 10))


def mnist_lip_cayley(channels: tuple[int, int] = (32, 64), dense: int = 256) -> LipschitzNet:
    """A 1-Lipschitz network with exactly orthogonal (Cayley) convolutions for MNIST.

    Input (N, 1, 28, 28) in [0, 1]; output (N, 10) logits; ``lipschitz`` is 1 up to the
    measured float error of the Cayley layers:

        centre -> unshuffle 2 (4 x 14 x 14) -> CayleyConv c1, MaxMin -> CayleyConv c1, MaxMin
        -> unshuffle 2 (4 c1 x 7 x 7) -> CayleyConv c2, MaxMin -> flatten (c2 * 49)
        -> AOLLinear dense, MaxMin -> AOLLinear 10
    """
    c1, c2 = _check_widths(channels, dense)
    return LipschitzNet(
        Center(0.1307), nn.PixelUnshuffle(2),
        CayleyConv2d(4, c1, 14), MaxMin(), CayleyConv2d(c1, c1, 14), MaxMin(),
        nn.PixelUnshuffle(2),
        CayleyConv2d(4 * c1, c2, 7), MaxMin(),
        nn.Flatten(), AOLLinear(c2 * 49, dense), MaxMin(), AOLLinear(dense, 10))


def mnist_lip_sll(channels: tuple[int, int] = (16, 32), dense: int = 256, blocks: int = 2) -> LipschitzNet:
    """A 1-Lipschitz network with SLL residual blocks for MNIST.

    Input (N, 1, 28, 28) in [0, 1]; output (N, 10) logits; ``lipschitz == 1``:

        centre -> unshuffle 2 (4 x 14 x 14) -> AOLConv c1 -> blocks x SLLConv c1
        -> unshuffle 2 (4 c1 x 7 x 7) -> AOLConv c2 -> blocks x SLLConv c2 -> flatten (c2 * 49)
        -> AOLLinear dense -> blocks x SLLLinear dense -> AOLLinear 10
    """
    c1, c2 = channels
    if min(c1, c2, dense, blocks) < 1:
        raise ValueError(f"channels/dense/blocks: must be >= 1, got {channels}, {dense}, {blocks}")
    return LipschitzNet(
        Center(0.1307), nn.PixelUnshuffle(2), AOLConv2d(4, c1), *[SLLConv2d(c1) for _ in range(blocks)],
        nn.PixelUnshuffle(2), AOLConv2d(4 * c1, c2), *[SLLConv2d(c2) for _ in range(blocks)],
        nn.Flatten(), AOLLinear(c2 * 49, dense), *[SLLLinear(dense) for _ in range(blocks)],
        AOLLinear(dense, 10))


# every builder the zoo can name; a configured variant is a partial of its builder
ARCHITECTURES = {"mnist_lip": mnist_lip, "mnist_lip_conv": mnist_lip_conv, "mnist_lip_cayley": mnist_lip_cayley,
                 "mnist_lip_sll": mnist_lip_sll,
                 "mnist_lip_sll_wide": functools.partial(mnist_lip_sll, dense=512, blocks=3),
                 "mnist_lip_sll_c24": functools.partial(mnist_lip_sll, channels=(24, 48))}


def load_mnist_lip(entry: object, state: dict[str, Tensor] | None) -> LipschitzNet:
    """Zoo loader for ``mnist-lip``: the builder named by the entry's ``architecture`` (a key of
    ``ARCHITECTURES``: ``mnist_lip_sll`` the shipped SLL net, ``mnist_lip_sll_wide`` its variant
    with a wider dense part, ``mnist_lip_sll_c24`` its variant with wider convolutions (24 / 48),
    ``mnist_lip_conv`` the AOL conv net, ``mnist_lip`` the MLP) plus its weights."""
    arch = getattr(entry, "architecture", "mnist_lip")
    if arch not in ARCHITECTURES:
        raise ValueError(f"entry: unknown Lipschitz architecture {arch!r} (known: {sorted(ARCHITECTURES)})")
    model = ARCHITECTURES[arch]()
    if state is not None:
        model.load_state_dict(state, strict=True)
    return model.eval()


__all__ = [
    "ARCHITECTURES",
    "AOLConv2d",
    "AOLLinear",
    "CayleyConv2d",
    "Center",
    "LipschitzNet",
    "MaxMin",
    "SLLConv2d",
    "SLLLinear",
    "layer_lipschitz",
    "load_mnist_lip",
    "mnist_lip",
    "mnist_lip_cayley",
    "mnist_lip_conv",
    "mnist_lip_sll",
]
