"""Certified next to empirical robust accuracy of a shipped smoothed model at one L2 radius.

    python benchmarks/smoothing_empirical.py mnist-cnn-smooth-0.25 --eps 0.5 --points 100

Certified: the CERTIFY results of benchmarks/smoothing.py (runs/smoothing-NAME-n100000.jsonl,
the same first points). Empirical: SmoothAdv-style L2 PGD (Salman et al. 2019) through the
model's EOT attack view (``--eot`` noise draws per step, cross-entropy of the soft smoothed
classifier, ``--steps`` steps, ``--restarts`` restarts), each adversarial point then judged by
the deployed smoothed classifier (PREDICT, n = 1000, alpha 0.001; abstaining counts as
defended). Empirical robust accuracy must never be below certified: a point certified and broken
would be printed and fail the run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import robustlab as rl
from robustlab.certify.smoothing import Smoothed
from robustlab.threats import LpBall

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--eps", type=float, required=True)
    ap.add_argument("--points", type=int, default=100)
    ap.add_argument("--n", type=int, default=100_000, help="n of the certification log to read")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--restarts", type=int, default=2)
    ap.add_argument("--eot", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = rl.models.load(args.name)
    assert isinstance(g, Smoothed)
    log = ROOT / "runs" / f"smoothing-{args.name}-n{args.n}.jsonl"
    rows = {r["index"]: r for r in (json.loads(line) for line in log.read_text().splitlines())}
    idx = [i for i in range(args.points) if i in rows]
    x, y = rl.data.load("mnist", "test", n=args.points)
    x, y = x[idx], y[idx]
    radius = torch.tensor([rows[i]["radius"] for i in idx])
    pred = torch.tensor([rows[i]["prediction"] for i in idx])
    certified = (pred == y) & (radius > args.eps)

    threat = LpBall("l2", args.eps)
    g.eot_samples = args.eot
    view = g.attack_view()
    t0 = time.time()
    pgd = rl.attacks.PGD(threat, steps=args.steps, restarts=args.restarts, loss="ce", early_stop=False, seed=0)
    x_adv = pgd(view, x, y).x_adv
    deployed = Smoothed(g.model, g.sigma, n=1000, alpha=0.001, seed=1)
    clean_pred = deployed(x).argmax(1)
    adv_pred = deployed(x_adv).argmax(1)
    secs = time.time() - t0
    reject = 10
    clean_ok = clean_pred == y
    broken = (adv_pred != y) & (adv_pred != reject)
    robust = clean_ok & ~broken
    violations = (certified & broken).nonzero().flatten().tolist()
    abst = int((adv_pred == reject).sum())
    n = len(idx)
    print(f"{args.name} at L2 {args.eps}, first {n} MNIST test points: certified (CERTIFY n=100k) "
          f"{100 * certified.float().mean():.1f}%, PREDICT clean {100 * clean_ok.float().mean():.1f}%, "
          f"empirical robust under SmoothAdv PGD ({args.steps} steps x {args.restarts}, EOT {args.eot}) "
          f"{100 * robust.float().mean():.1f}% ({abst} abstained on the attack point); {secs:.0f} s")
    if violations:
        print(f"CERTIFIED AND BROKEN: test points {[idx[i] for i in violations]}")
        sys.exit(1)
    print("no certified point was broken")


if __name__ == "__main__":
    main()
