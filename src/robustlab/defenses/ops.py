"""Input transforms as plain functions on (N, C, H, W) batches in [0, 1].

These are the deployed operations behind ``defenses.transforms`` and the squeezers of
``defenses.detectors``. Randomness comes from per-sample generators (``sample_generators``):
each point's draw depends only on its own content and a seed, never on its batch, so a result
is the same whether the point is evaluated alone, in a batch of 500 or on another shard.
"""
from __future__ import annotations

import hashlib
import io

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def sample_generators(x: Tensor, seed: int, salt: str) -> list[torch.Generator]:
    """One CPU ``torch.Generator`` per sample, seeded from blake2b(seed, salt, the sample's
    float32 bytes). The same point with the same seed and salt always gets the same draw;
    ``salt`` separates independent streams (the deployed draw from the EOT draws)."""
    flat = x.detach().to(device="cpu", dtype=torch.float32).contiguous().reshape(x.shape[0], -1).numpy()
    head = f"{int(seed)}|{salt}|".encode()
    gens = []
    for row in flat:
        digest = hashlib.blake2b(head + row.tobytes(), digest_size=8).digest()
        g = torch.Generator()
        g.manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
        gens.append(g)
    return gens


def straight_through(value: Tensor, surrogate: Tensor) -> Tensor:
    """``value`` in the forward pass, the gradient of ``surrogate`` in the backward pass (BPDA)."""
    return surrogate + (value - surrogate).detach()


def bit_depth(x: Tensor, bits: int) -> Tensor:
    """Reduce each value to ``bits`` bits: round(x * (2^bits - 1)) / (2^bits - 1), as Xu et al.
    2018 (numpy's rint: halves round to even). Zero gradient almost everywhere."""
    levels = float(2 ** bits - 1)
    return torch.round(x * levels) / levels


def _symmetric_pad(x: Tensor, before: int, after: int, dim: int) -> Tensor:
    # scipy.ndimage's "reflect": d c b a | a b c d | d c b a (the edge value repeated).
    parts = []
    if before:
        parts.append(x.narrow(dim, 0, before).flip(dim))
    parts.append(x)
    if after:
        parts.append(x.narrow(dim, x.shape[dim] - after, after).flip(dim))
    return torch.cat(parts, dim=dim)


def median_filter(x: Tensor, size: int) -> Tensor:
    """Median over a ``size`` x ``size`` window per channel, the same values as
    ``scipy.ndimage.median_filter(img, size, mode="reflect")`` (for even windows the upper of the
    two middle values, scipy's rank size*size // 2). Differentiable almost everywhere: the
    gradient reaches the pixel that is the median."""
    if size == 1:
        return x
    before, after = size // 2, size - 1 - size // 2
    xp = _symmetric_pad(_symmetric_pad(x, before, after, 2), before, after, 3)
    windows = xp.unfold(2, size, 1).unfold(3, size, 1)  # (N, C, H, W, size, size)
    flat = windows.reshape(*windows.shape[:4], size * size)
    return flat.kthvalue(size * size // 2 + 1, dim=-1).values


def jpeg_pillow(x: Tensor, quality: int) -> Tensor:
    """JPEG encode and decode every image with Pillow at ``quality`` (1-95): the real codec.

    Values are rounded to 8 bits first (what an image file holds). 1-channel inputs are coded
    as greyscale ("L"), 3-channel as RGB (with Pillow's default 4:2:0 chroma subsampling).
    Returns a new tensor on ``x``'s device and dtype, outside any autograd graph.
    """
    from PIL import Image

    n, c = x.shape[:2]
    if c not in (1, 3):
        raise ValueError(f"x: JPEG needs 1 or 3 channels, got {c}")
    arr = (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()
    out = np.empty_like(arr)
    mode = "L" if c == 1 else "RGB"
    for i in range(n):
        img = Image.fromarray(arr[i, 0] if c == 1 else arr[i].transpose(1, 2, 0), mode)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert(mode))
        out[i] = dec[None] if c == 1 else dec.transpose(2, 0, 1)
    return torch.from_numpy(out).to(device=x.device, dtype=x.dtype) / 255.0


def _grad2d(u: Tensor) -> tuple[Tensor, Tensor]:
    gx = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1))
    gy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    return gx, gy


def _div2d(px: Tensor, py: Tensor) -> Tensor:
    # The negative adjoint of _grad2d (Chambolle 2004, eq. 2.1 boundary rules).
    dx = torch.cat([px[..., :, :1], px[..., :, 1:-1] - px[..., :, :-2], -px[..., :, -2:-1]], dim=-1)
    dy = torch.cat([py[..., :1, :], py[..., 1:-1, :] - py[..., :-2, :], -py[..., -2:-1, :]], dim=-2)
    return dx + dy


def tv_denoise(x: Tensor, weight: float, iters: int) -> Tensor:
    """Isotropic total-variation denoising per channel: argmin_u ||u - x||^2 / 2 + weight * TV(u),
    by ``iters`` steps of Chambolle's (2004) dual projection (step 1/8, which converges).
    Made of differentiable torch operations (an unrolled solver); clipped to [0, 1]."""
    px = torch.zeros_like(x)
    py = torch.zeros_like(x)
    tau = 0.125
    for _ in range(iters):
        gx, gy = _grad2d(_div2d(px, py) - x / weight)
        norm = torch.sqrt(gx * gx + gy * gy + 1e-12)
        px = (px + tau * gx) / (1 + tau * norm)
        py = (py + tau * gy) / (1 + tau * norm)
    return (x - weight * _div2d(px, py)).clamp(0, 1)


def total_variation(x: Tensor) -> Tensor:
    """(N,) isotropic total variation, summed over channels and pixels."""
    gx, gy = _grad2d(x)
    return torch.sqrt(gx * gx + gy * gy + 1e-12).flatten(1).sum(1)


def resize_pad(x: Tensor, gens: list[torch.Generator], min_size: int, mode: str) -> Tensor:
    """Xie et al. 2018's randomisation, for a classifier with a fixed input size: resize each
    image to a random r x r, r uniform in [min_size, H], then zero-pad it back to H x W at a
    random offset. Per-sample draws from ``gens``; differentiable in ``x`` (bilinear or nearest
    interpolation, then padding)."""
    n, _, h, w = x.shape
    out = []
    for i in range(n):
        r = int(torch.randint(min_size, h + 1, (1,), generator=gens[i]))
        rw = max(1, round(r * w / h))
        top = int(torch.randint(0, h - r + 1, (1,), generator=gens[i]))
        left = int(torch.randint(0, w - rw + 1, (1,), generator=gens[i]))
        kw = {"align_corners": False} if mode == "bilinear" else {}
        small = F.interpolate(x[i : i + 1], size=(r, rw), mode=mode, **kw)
        out.append(F.pad(small, (left, w - rw - left, top, h - r - top)))
    return torch.cat(out, dim=0)


def gaussian_noise(x: Tensor, gens: list[torch.Generator], sigma: float) -> Tensor:
    """x + N(0, sigma^2) per pixel, clipped to [0, 1]. The clip passes the gradient straight
    through (a saturated pixel would otherwise hide its gradient from an EOT attack)."""
    noise = torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens]).to(x.device, x.dtype)
    noisy = x + sigma * noise
    return straight_through(noisy.clamp(0, 1), noisy)


__all__ = ["sample_generators", "straight_through", "bit_depth", "median_filter", "jpeg_pillow", "tv_denoise",
           "total_variation", "resize_pad", "gaussian_noise"]
