"""Write tests/fixtures/bounds_golden.npz: auto_LiRPA's IBP and CROWN margin bounds on three
small random nets (an MLP, a CNN with Normalize, a residual block with BatchNorm and AvgPool),
with the nets' weights and the points, so tests/test_bounds_golden.py checks our bounds
against an independent implementation without auto_LiRPA installed.

    /work/venvs/bounds/bin/python scripts/make_bounds_golden.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm  # noqa: E402

from bound_samplers import small_net  # noqa: E402
from robustlab.certify import margin_spec  # noqa: E402

KINDS, EPS = ("mlp", "cnn", "residual"), 0.05


def main() -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 6, 6, generator=gen)
    y = torch.randint(0, 5, (4,), generator=gen)
    spec = margin_spec(y, 5)
    out = {"x": x.numpy(), "y": y.numpy(), "eps": np.float32(EPS)}
    for kind in KINDS:
        net = small_net(kind, 7)
        for k, v in net.state_dict().items():
            out[f"{kind}/{k}"] = v.numpy()
        lirpa = BoundedModule(net, torch.empty_like(x), device="cpu", verbose=0)
        ptb = PerturbationLpNorm(norm=np.inf, eps=EPS, x_L=(x - EPS).clamp(0, 1), x_U=(x + EPS).clamp(0, 1))
        for method in ("IBP", "CROWN"):
            lo, hi = lirpa.compute_bounds(x=(BoundedTensor(x, ptb),), method=method, C=spec)
            out[f"{kind}/{method.lower()}_lower"] = lo.detach().numpy()
            out[f"{kind}/{method.lower()}_upper"] = hi.detach().numpy()
    np.savez(ROOT / "tests" / "fixtures" / "bounds_golden.npz", **out)


if __name__ == "__main__":
    main()
