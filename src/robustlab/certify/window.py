"""Back-substituted linear functions kept as local windows on a conv map (auto_LiRPA's
"patches" idea), for :mod:`robustlab.certify.crown`.

A row of a CROWN back-substitution that starts at one neuron of a conv map depends, layers
below, only on that neuron's receptive field. ``Window`` keeps just that field: coefficients
``a`` (N, S, C, h, w) on an h x w window of a (C, H, W) map whose top-left corner is at ``off``
(N, S, 2). The functions here move a window back through convolutions, pooling and elementwise
affine layers (``window_affine``), read maps on it (``gather``, ``gather_rows``), add two
functions of one node (``add_functions``) and write it out densely (``to_dense``) once it has
grown to its map's size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.certify.ops import _bn_affine, _pair, _pool_weight
from robustlab.models.layers import Normalize

WINDOWED = (nn.Conv2d, nn.AvgPool2d, Normalize, nn.BatchNorm2d)  # layers a Window passes through
WINDOW_MATRIX = 2 ** 22  # largest window-to-window conv matrix (floats) applied as one matmul


@dataclass
class Window:
    """A back-substituted linear function kept as a local patch (auto_LiRPA's "patches" idea):
    ``a`` (N, S, C, h, w) holds the coefficients on the h x w window of a (C, H, W) map whose
    top-left corner is at ``off`` (N, S, 2) in map coordinates (may be negative). Coefficients
    outside the map are kept at exactly zero, so sums over the window are sums over the map."""

    a: Tensor
    off: Tensor


def window_index(off: Tensor, size: int, extent: int) -> tuple[Tensor, Tensor]:
    """Map coordinates (N, S, size) of a window's rows or columns and whether each is inside [0, extent)."""
    idx = off.unsqueeze(-1) + torch.arange(size, device=off.device)
    return idx, (idx >= 0) & (idx < extent)


def mask_outside(win: Window, shape: tuple[int, ...]) -> Window:
    """Zero the coefficients that fall outside the (C, H, W) map."""
    if int(win.off.min()) >= 0 and int(win.off[..., 0].max()) + win.a.shape[3] <= shape[1] \
            and int(win.off[..., 1].max()) + win.a.shape[4] <= shape[2]:
        return win  # every window lies inside the map
    _, vh = window_index(win.off[..., 0], win.a.shape[3], shape[1])
    _, vw = window_index(win.off[..., 1], win.a.shape[4], shape[2])
    keep = (vh.unsqueeze(-1) & vw.unsqueeze(-2)).unsqueeze(2)  # (N, S, 1, h, w)
    return Window(win.a * keep.to(win.a.dtype), win.off)


def gather(m: Tensor, win: Window) -> Tensor:
    """The (N, S, C, h, w) windows of the map ``m`` (N, C, H, W) at ``win``'s offsets (0 outside).

    All h x w patches of the zero-padded map (``unfold``), then one row pick per window."""
    n, c, hgt, wid = m.shape
    h, w = win.a.shape[3], win.a.shape[4]
    pad = max(0, int(-win.off.min()), int((win.off[..., 0] + h - hgt).max()), int((win.off[..., 1] + w - wid).max()))
    patches = torch.nn.functional.unfold(torch.nn.functional.pad(m, (pad, pad, pad, pad)), (h, w))  # (N, C*h*w, L)
    cols = wid + 2 * pad - w + 1
    idx = (win.off[..., 0] + pad) * cols + (win.off[..., 1] + pad)  # (N, S)
    out = patches.transpose(1, 2)[torch.arange(n, device=m.device).unsqueeze(1), idx]  # (N, S, C*h*w)
    return out.view(n, idx.shape[1], c, h, w)


def to_dense(win: Window, shape: tuple[int, ...]) -> Tensor:
    """The window written into the full (C, H, W) map: (N, S, C, H, W)."""
    n, s, _c, h, w = win.a.shape
    ih, vh = window_index(-win.off[..., 0], shape[1], h)  # window row of each map row
    iw, vw = window_index(-win.off[..., 1], shape[2], w)
    a = win.a.permute(0, 1, 3, 4, 2)  # (N, S, h, w, C)
    nn_ = torch.arange(n, device=a.device).view(n, 1, 1, 1)
    ss_ = torch.arange(s, device=a.device).view(1, s, 1, 1)
    out = a[nn_, ss_, ih.clamp(0, h - 1).unsqueeze(-1), iw.clamp(0, w - 1).unsqueeze(-2)]  # (N, S, H, W, C)
    keep = (vh.unsqueeze(-1) & vw.unsqueeze(-2)).unsqueeze(-1)
    return (out * keep.to(out.dtype)).permute(0, 1, 4, 2, 3)


def add_functions(x: Tensor | Window, y: Tensor | Window, shape: tuple[int, ...]) -> Tensor | Window:
    """Sum of two linear functions of the same node, dense or windowed."""
    if isinstance(x, Window) and isinstance(y, Window):
        lo = torch.minimum(x.off, y.off)
        hi = torch.maximum(x.off + torch.tensor(x.a.shape[3:], device=x.off.device),
                           y.off + torch.tensor(y.a.shape[3:], device=y.off.device))
        size = hi - lo
        if bool((size == size[0, 0]).all()) and bool((x.off - lo == (x.off - lo)[0, 0]).all()) \
                and bool((y.off - lo == (y.off - lo)[0, 0]).all()):
            h, w = int(size[0, 0, 0]), int(size[0, 0, 1])

            def place(v: Window) -> Tensor:
                t, left = [int(u) for u in (v.off - lo)[0, 0]]
                return torch.nn.functional.pad(v.a, (left, w - left - v.a.shape[4], t, h - t - v.a.shape[3]))
            return Window(place(x) + place(y), lo)
    xd = to_dense(x, shape) if isinstance(x, Window) else x
    yd = to_dense(y, shape) if isinstance(y, Window) else y
    return xd + yd


def window_affine(m: nn.Module, win: Window, in_shape: tuple[int, ...]) -> tuple[Window, Tensor]:
    """``backward_affine`` for a windowed function: (window at the layer's input, bias (N, S))."""
    n, s, c, h, w = win.a.shape
    if isinstance(m, (nn.Conv2d, nn.AvgPool2d)):
        if isinstance(m, nn.Conv2d):
            weight, groups, dl = m.weight, m.groups, _pair(m.dilation)
            bias = (win.a.sum((3, 4)) @ m.bias) if m.bias is not None else win.a.new_zeros(n, s)
        else:
            weight, groups, dl = _pool_weight(m, c, win.a), c, (1, 1)
            bias = win.a.new_zeros(n, s)
        st = _pair(m.stride if not isinstance(m, nn.AvgPool2d) or m.stride is not None else m.kernel_size)
        pd = _pair(m.padding)
        if c * h * w * weight.shape[1] * groups * ((h - 1) * st[0] + dl[0] * (weight.shape[2] - 1) + 1) \
                * ((w - 1) * st[1] + dl[1] * (weight.shape[3] - 1) + 1) <= WINDOW_MATRIX:
            # small windows: one matmul with the transposed convolution's matrix on the window
            # (built by applying it to the window's unit vectors) beats many tiny convolutions
            eye = torch.eye(c * h * w, dtype=win.a.dtype, device=win.a.device).view(c * h * w, c, h, w)
            mat = torch.nn.functional.conv_transpose2d(eye, weight, None, st, 0, 0, groups, dl)
            a_in = (win.a.reshape(n * s, c * h * w) @ mat.flatten(1)).view(n * s, *mat.shape[1:])
        else:
            a_in = torch.nn.functional.conv_transpose2d(win.a.reshape(n * s, c, h, w), weight, None, st, 0, 0,
                                                        groups, dl)
        off = win.off * torch.tensor(st, device=win.off.device) - torch.tensor(pd, device=win.off.device)
        return mask_outside(Window(a_in.reshape(n, s, *a_in.shape[1:]), off), in_shape), bias
    if isinstance(m, Normalize):
        inv = (1.0 / m.std).view(-1, 1, 1)
        return Window(win.a * inv, win.off), -(win.a.sum((3, 4)) @ (m.mean / m.std).flatten())
    if isinstance(m, nn.BatchNorm2d):
        scale, shift = _bn_affine(m)
        return Window(win.a * scale.view(-1, 1, 1), win.off), win.a.sum((3, 4)) @ shift
    raise ValueError(f"m: no windowed backward rule for {type(m).__name__}")


def gather_rows(dl: Tensor, win: Window) -> Tensor:
    """Windows of per-row maps ``dl`` (N, S, C, H, W): row s of sample i from dl[i, s] (0 outside)."""
    n, s, _, hgt, wid = dl.shape
    h, w = win.a.shape[3], win.a.shape[4]
    ih, vh = window_index(win.off[..., 0], h, hgt)  # (N, S, h)
    iw, vw = window_index(win.off[..., 1], w, wid)
    nn_ = torch.arange(n, device=dl.device).view(n, 1, 1, 1)
    ss_ = torch.arange(s, device=dl.device).view(1, s, 1, 1)
    out = dl.permute(0, 1, 3, 4, 2)[nn_, ss_, ih.clamp(0, hgt - 1).unsqueeze(-1), iw.clamp(0, wid - 1).unsqueeze(-2)]
    keep = (vh.unsqueeze(-1) & vw.unsqueeze(-2)).unsqueeze(-1)
    return (out * keep.to(out.dtype)).permute(0, 1, 4, 2, 3)  # (N, S, C, h, w)


__all__ = [
    "WINDOWED",
    "WINDOW_MATRIX",
    "Window",
    "add_functions",
    "gather",
    "gather_rows",
    "mask_outside",
    "to_dense",
    "window_affine",
    "window_index",
]
