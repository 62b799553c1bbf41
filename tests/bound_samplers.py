"""Points of a threat set for soundness tests: uniform in the ball, corners, PGD iterates."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.certify import Residual
from robustlab.models.layers import Normalize
from robustlab.threats import LpBall


def ball_points(x: Tensor, ball: LpBall, m: int, gen: torch.Generator) -> Tensor:
    """(N, m, *shape): m points per sample, half drawn from the ball, half corners (every
    coordinate at +-eps for Linf; on the sphere for L2/L1), all cut to [0, 1]."""
    n = x.shape[0]
    xr = x.repeat_interleave(m, 0)
    inner = ball.random_start(xr, gen)
    if ball.norm == "linf":
        sign = torch.randint(0, 2, xr.shape, generator=gen).to(x.dtype) * 2 - 1
        corner = xr + sign * ball.eps
    else:
        d = inner - xr
        norm = d.flatten(1).norm(p=2 if ball.norm == "l2" else 1, dim=1).clamp_min(1e-12)
        corner = xr + d * (ball.eps / norm).view(-1, *([1] * (x.dim() - 1)))
    half = torch.rand(n * m, generator=gen) < 0.5
    pts = torch.where(half.view(-1, *([1] * (x.dim() - 1))), inner, corner).clamp(0, 1)
    return pts.view(n, m, *x.shape[1:])


def pgd_points(model: nn.Module, x: Tensor, ball: LpBall, spec: Tensor, steps: int, gen: torch.Generator) -> Tensor:
    """(N, 2 * S * (steps + 1), *shape): PGD iterates that push every spec row (N, S, K) up and down."""
    n, s = spec.shape[:2]
    rows = torch.cat([spec, -spec], 1)  # (N, 2S, K)
    xr = x.repeat_interleave(2 * s, 0)
    c = rows.reshape(n * 2 * s, -1)
    z = ball.random_start(xr, gen).clamp(0, 1)
    step = 2.5 * ball.eps / steps
    out = [z]
    for _ in range(steps):
        z = z.detach().requires_grad_(True)
        (model(z) * c).sum().backward()
        g = z.grad
        if ball.norm == "linf":
            d = g.sign()
        else:
            d = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
        z = ball.project((z + step * d).detach(), xr)
        out.append(z)
    return torch.stack(out, 1).view(n, 2 * s, steps + 1, *x.shape[1:]).flatten(1, 2)


def spec_values(model: nn.Module, pts: Tensor, spec: Tensor) -> Tensor:
    """(N, M, S): spec[i] @ model(pts[i, m])."""
    n, m = pts.shape[:2]
    with torch.no_grad():
        out = model(pts.flatten(0, 1)).view(n, m, -1)
    return torch.einsum("nmk,nsk->nms", out, spec)


def small_net(kind: str, seed: int) -> nn.Module:
    """Random nets on (N, 1, 6, 6) inputs, 5 outputs: \"mlp\", \"cnn\" (Normalize, strided conv) or
    \"residual\" (a Residual block with eval BatchNorm, then AvgPool2d)."""
    torch.manual_seed(seed)
    if kind == "mlp":
        net = nn.Sequential(nn.Flatten(), nn.Linear(36, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 5))
    elif kind == "cnn":
        net = nn.Sequential(Normalize((0.4,), (0.3,)), nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                            nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(54, 5))
    else:  # residual block, eval BatchNorm, average pooling
        net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
            Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                   nn.Conv2d(4, 4, 3, padding=1))),
            nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(36, 12), nn.ReLU(), nn.Linear(12, 5))
        bn = net[2].body[1]
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    return net.eval()
