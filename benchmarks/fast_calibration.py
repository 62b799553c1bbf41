"""How the fast preset's Square gate was set: where do the points AutoAttack breaks, and fast's
gradient stages miss, sit in relative margin?

    python benchmarks/fast_calibration.py [--seed 0] [--n 1000]

Runs ``FastEval`` with early rejection and Square off on the first N MNIST test points
(mnist-cnn-at, Linf 0.3), then sets the relative margin of every point it left robust
(margin at its lowest-margin point / clean margin) against torchattacks' AutoAttack per-point
outcomes of seeds 0-2 (benchmarks/results/autoattack-1000/at-linf-torchattacks-seedS.json, same
points). Prints the points some AutoAttack seed broke and fast's gradient stages missed, with
their relative margins, and the quantiles of the relative margin over the robust points.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import robustlab as rl
from robustlab.attacks.fast import FastEval, logit_margin

AA = "benchmarks/results/autoattack-1000/at-linf-torchattacks-seed{seed}.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = rl.models.load("mnist-cnn-at")
    x, y = rl.data.load("mnist", "test", n=args.n)
    threat = rl.LpBall("linf", 0.3)
    t0 = time.time()
    attack = FastEval(threat, reject_margin=9.0, square_margin=0.0, seed=args.seed,
                      on_stage=lambda s: print(f"{time.time() - t0:6.0f} s  {s}", flush=True))
    res = attack(model, x, y)
    with torch.no_grad():
        m0, m1 = logit_margin(model(x), y), logit_margin(model(res.x_adv), y)
    robust = (m0 > 0) & ~res.success
    rel = m1 / m0.clamp_min(1e-12)
    aa = [torch.tensor(json.load(open(AA.format(seed=s)))["at-linf"]["torchattacks"]["robust"])[:args.n]
          for s in range(3)]
    broken_by_aa = ~torch.stack(aa).all(dim=0)
    missed = (robust & broken_by_aa).nonzero().squeeze(1).tolist()
    print(f"\nfast without rejection and Square: robust {robust.float().mean():.2%}, "
          f"{(res.forward_calls + res.backward_calls) / args.n:.0f} passes per point")
    print(f"points some AutoAttack seed broke and these stages missed: {len(missed)}")
    for i in missed:
        seeds = [s for s in range(3) if not bool(aa[s][i])]
        print(f"  point {i}: relative margin {rel[i]:.3f} (margin {m1[i]:.2f} of {m0[i]:.2f}), "
              f"broken by AutoAttack seeds {seeds}")
    qs = torch.tensor([0.01, 0.05, 0.1, 0.2, 0.5, 0.9])
    print("relative margin of the robust points, quantiles", qs.tolist(), ":",
          [round(v, 3) for v in torch.quantile(rel[robust], qs).tolist()])


if __name__ == "__main__":
    main()
