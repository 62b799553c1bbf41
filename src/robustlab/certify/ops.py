"""Per-layer rules of bound propagation: interval (IBP) forward, linear (CROWN) backward, and the
ReLU relaxation. Shapes: N samples, S rows of the bounded linear function (spec rows), and the
layer's per-sample shape ``*shape``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.models.layers import Normalize


def _bn_affine(m: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """(scale, shift) per channel of an eval-mode BatchNorm2d: y = x * scale + shift."""
    mean, var = m.running_mean, m.running_var
    w = m.weight if m.weight is not None else torch.ones_like(mean)
    b = m.bias if m.bias is not None else torch.zeros_like(mean)
    scale = w / torch.sqrt(var + m.eps)
    return scale, b - mean * scale


def _pool_weight(m: nn.AvgPool2d, channels: int, like: Tensor) -> Tensor:
    k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size, m.kernel_size)
    return torch.full((channels, 1, *k), 1.0 / (k[0] * k[1]), dtype=like.dtype, device=like.device)


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return v if isinstance(v, tuple) else (v, v)


def interval_affine(m: nn.Module, c: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """Image of the box center ``c`` +- radius ``r`` (N, *in shape) under the affine layer ``m``:
    the exact interval hull (new center, new radius)."""
    if isinstance(m, nn.Linear):
        return F.linear(c, m.weight, m.bias), F.linear(r, m.weight.abs())
    if isinstance(m, nn.Conv2d):
        return m(c), F.conv2d(r, m.weight.abs(), None, m.stride, m.padding, m.dilation, m.groups)
    if isinstance(m, nn.Flatten):
        return m(c), m(r)
    if isinstance(m, Normalize):
        return m(c), r / m.std
    if isinstance(m, nn.BatchNorm2d):
        scale, shift = _bn_affine(m)
        return c * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1), r * scale.abs().view(1, -1, 1, 1)
    if isinstance(m, nn.AvgPool2d):
        return m(c), m(r)
    raise ValueError(f"m: no interval rule for {type(m).__name__}")


def backward_affine(m: nn.Module, a: Tensor, in_shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Pull the linear function ``a`` (N, S, *out shape) of the layer's output back to its input.

    Returns (A_in (N, S, *in_shape), bias (N, S)) with a . m(z) = A_in . z + bias for every z.
    """
    n, s = a.shape[:2]
    if isinstance(m, nn.Linear):
        bias = a @ m.bias if m.bias is not None else a.new_zeros(n, s)
        return a @ m.weight, bias
    if isinstance(m, nn.Conv2d):
        # channels_last: the CPU transposed convolution is about 3x faster on it
        out = a.reshape(n * s, *a.shape[2:]).contiguous(memory_format=torch.channels_last)
        st, pd, dl = _pair(m.stride), _pair(m.padding), _pair(m.dilation)
        k = m.weight.shape[2:]
        op = tuple(in_shape[1 + i] - ((out.shape[2 + i] - 1) * st[i] - 2 * pd[i] + dl[i] * (k[i] - 1) + 1)
                   for i in range(2))
        a_in = F.conv_transpose2d(out, m.weight, None, st, pd, op, m.groups, dl)
        bias = (a.sum((3, 4)) @ m.bias) if m.bias is not None else a.new_zeros(n, s)
        return a_in.reshape(n, s, *in_shape), bias
    if isinstance(m, nn.Flatten):
        return a.reshape(n, s, *in_shape), a.new_zeros(n, s)
    if isinstance(m, Normalize):
        inv = (1.0 / m.std).view(-1, 1, 1)
        return a * inv, -(a.sum((3, 4)) @ (m.mean / m.std).flatten())
    if isinstance(m, nn.BatchNorm2d):
        scale, shift = _bn_affine(m)
        return a * scale.view(-1, 1, 1), a.sum((3, 4)) @ shift
    if isinstance(m, nn.AvgPool2d):
        out = a.reshape(n * s, *a.shape[2:])
        c = out.shape[1]
        st = _pair(m.stride if m.stride is not None else m.kernel_size)
        pd = _pair(m.padding)
        k = _pair(m.kernel_size)
        op = tuple(in_shape[1 + i] - ((out.shape[2 + i] - 1) * st[i] - 2 * pd[i] + k[i]) for i in range(2))
        a_in = F.conv_transpose2d(out, _pool_weight(m, c, a), None, st, pd, op, c)
        return a_in.reshape(n, s, *in_shape), a.new_zeros(n, s)
    raise ValueError(f"m: no backward rule for {type(m).__name__}")


def relu_relaxation(lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Linear bounds of relu(z) for z in [lower, upper] (N, *shape), elementwise.

    Returns (upper slope, upper intercept, default lower slope): relu(z) <= du * z + bu and
    relu(z) >= dl * z for any dl in [0, 1] on unstable neurons (lower < 0 < upper); the default
    dl is 1 where upper >= -lower, else 0 (CROWN's adaptive choice). Stable neurons are exact.
    """
    active = lower >= 0
    unstable = (lower < 0) & (upper > 0)
    denom = torch.where(unstable, upper - lower, torch.ones_like(upper))
    du = torch.where(unstable, upper / denom, active.to(upper.dtype))
    bu = torch.where(unstable, -lower * upper / denom, torch.zeros_like(upper))
    dl = torch.where(unstable, (upper >= -lower).to(upper.dtype), active.to(upper.dtype))
    return du, bu, dl


def backward_relu(a: Tensor, du: Tensor, bu: Tensor, dl: Tensor, upper_side: bool | Tensor) -> tuple[Tensor, Tensor]:
    """Pull ``a`` (N, S, *shape) back through a relaxed ReLU.

    For a lower bound (upper_side False) positive coefficients take the lower line and negative
    ones the upper line; for an upper bound the other way round (``upper_side`` may be an (S,)
    bool tensor choosing per row). ``dl`` is (N, *shape) or
    (N, S, *shape) (optimised slopes, one per spec row); ``du`` and ``bu`` are (N, *shape), or
    (N, S, *shape) when already taken per row (windows). Returns (A_in, bias (N, S)).
    """
    if du.dim() < a.dim():
        du, bu = du.unsqueeze(1), bu.unsqueeze(1)
    if dl.dim() < a.dim():
        dl = dl.unsqueeze(1)
    if isinstance(upper_side, Tensor):
        on_upper = (a >= 0) == upper_side.view(1, -1, *([1] * (a.dim() - 2)))
    else:
        on_upper = (a >= 0) if upper_side else (a < 0)  # coefficients that take the upper line
    a_in = a * torch.where(on_upper, du, dl)
    # the upper line's intercept where it is taken (summed without copying channels_last inputs)
    bias = (torch.where(on_upper, a, 0.0) * bu).sum(dim=tuple(range(2, a.dim())))
    return a_in, bias
