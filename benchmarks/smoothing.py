"""Certified accuracy vs L2 radius of the shipped smoothed models at Cohen et al.'s protocol.

    python benchmarks/smoothing.py mnist-cnn-smooth-0.25 --points 500 --n 100000
    python benchmarks/smoothing.py mnist-cnn-smooth-0.50 --points 500 --n 100000 --card

Runs CERTIFY (n0 = 100 selection samples, n estimation samples, alpha = 0.001) on the first
``--points`` MNIST test points, one point at a time, appending each point's (label, prediction,
radius, seconds) to runs/smoothing-NAME-nN.jsonl so an interrupted run resumes where it stopped.
Prints certified accuracy at the anchor radii (a point counts at radius r when the prediction is
right and its certified radius is >= r, Cohen et al.'s convention) next to the anchors: Cohen et
al.'s Gaussian smoothing of LeNet on MNIST, N = 100k, alpha 0.001, from the certification logs of
jh-jeong/smoothing-consistency. ``--card`` writes the figures into the model card.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from scipy.stats import beta

import robustlab as rl
from robustlab.certify.smoothing import Smoothed

ROOT = Path(__file__).resolve().parents[1]
RADII = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.58, 1.75, 2.0]
ANCHORS = {  # sigma -> {radius: certified accuracy %}
    0.25: {0.0: 99.2, 0.25: 98.5, 0.5: 96.7, 0.75: 93.1},
    0.50: {1.0: 89.8, 1.58: 61.8},
}


def frozen(base: torch.nn.Module, batch_size: int) -> torch.nn.Module:
    """The base model as a frozen TorchScript trace: the same weights and operations (its logits
    were bitwise equal to the eager module's on 20,000 noisy MNIST inputs). Measured twice,
    interleaved, in process CPU time: no difference from the eager module (14.5k samples/s
    both at batch 1000); kept as an option, off by default."""
    with torch.inference_mode():
        return torch.jit.freeze(torch.jit.trace(base.eval(), torch.rand(batch_size, 1, 28, 28)))


def run(name: str, points: int, n0: int, n: int, alpha: float, batch_size: int, seed: int,
        jit: bool = False) -> list[dict]:
    model = rl.models.load(name)
    if not isinstance(model, Smoothed):
        raise ValueError(f"name: {name!r} is not a smoothed model")
    base = frozen(model.model, batch_size) if jit else model.model
    g = Smoothed(base, model.sigma, batch_size=batch_size, seed=seed)
    x, y = rl.data.load("mnist", "test", n=points)
    log = ROOT / "runs" / f"smoothing-{name}-n{n}.jsonl"
    log.parent.mkdir(exist_ok=True)
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    done = {r["index"] for r in rows}
    with log.open("a") as f:
        for i in range(points):
            if i in done:
                continue
            t0, c0 = time.time(), time.process_time()
            # each point its own generator stream (seed + index): resumable and order-free
            g.seed = seed + i
            pred, radius = g.certify(x[i:i + 1], n0, n, alpha)
            row = {"index": i, "label": int(y[i]), "prediction": int(pred[0]), "radius": float(radius[0]),
                   "seconds": round(time.time() - t0, 3), "cpu_seconds": round(time.process_time() - c0, 3)}
            f.write(json.dumps(row) + "\n")
            f.flush()
            rows.append(row)
    return sorted(rows, key=lambda r: r["index"])[:points]


def curve(rows: list[dict]) -> dict[float, float]:
    """Certified accuracy (%) at each radius of RADII."""
    out = {}
    for r in RADII:
        ok = [row["prediction"] == row["label"] and row["radius"] >= r for row in rows]
        out[r] = 100.0 * sum(ok) / len(ok)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--points", type=int, default=500)
    ap.add_argument("--n0", type=int, default=100)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--alpha", type=float, default=0.001)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report-only", action="store_true", help="summarise the points already in the log")
    ap.add_argument("--jit", action="store_true", help="run a frozen TorchScript trace of the base model "
                    "(bitwise-equal logits; points 8-99 of the sigma 0.25 run used it)")
    ap.add_argument("--card", action="store_true", help="write the figures into the model card")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.report_only:
        log = ROOT / "runs" / f"smoothing-{args.name}-n{args.n}.jsonl"
        rows = sorted((json.loads(line) for line in log.read_text().splitlines()), key=lambda r: r["index"])
        rows = [r for r in rows if r["index"] < args.points]
    else:
        rows = run(args.name, args.points, args.n0, args.n, args.alpha, args.batch_size, args.seed, args.jit)
    sigma = rl.models.load(args.name).sigma
    cur = curve(rows)
    anchors = ANCHORS.get(round(sigma, 2), {})
    secs = sum(r["seconds"] for r in rows)
    timed = [r["cpu_seconds"] for r in rows if "cpu_seconds" in r]
    abstain = sum(r["prediction"] == -1 for r in rows)
    print(f"{args.name}: sigma {sigma}, first {len(rows)} MNIST test points, n0 {args.n0}, n {args.n}, "
          f"alpha {args.alpha}; {secs / len(rows):.1f} s wall per point"
          + (f", {sum(timed) / len(timed):.1f} s process CPU per point ({len(timed)} timed)" if timed else "")
          + f", {abstain} abstained")
    print("| radius | certified accuracy % | 95% interval (Clopper-Pearson, over points) "
          "| anchor (Cohen et al., LeNet) | ours - anchor (pp) | anchor vs our interval |")
    print("|---|---|---|---|---|---|")
    ci = {}
    for r in RADII:
        a = anchors.get(r)
        k, m = round(cur[r] * len(rows) / 100), len(rows)
        lo = 100 * beta.ppf(0.025, k, m - k + 1) if k > 0 else 0.0
        hi = 100 * beta.ppf(0.975, k + 1, m - k) if k < m else 100.0
        ci[r] = (lo, hi)
        where = "" if a is None else ("inside" if lo <= a <= hi else ("above it" if a > hi else "below it"))
        print(f"| {r} | {cur[r]:.1f} | {lo:.1f} - {hi:.1f} | {a if a is not None else ''} "
              f"| {'' if a is None else f'{cur[r] - a:+.1f}'} | {where} |")
    if args.card:
        path = ROOT / "src" / "robustlab" / "models" / "weights" / f"{args.name}.json"
        card = json.loads(path.read_text())
        card["smoothing"] = {"sigma": sigma}
        for key in [k for k in card if k.startswith("certified_accuracy_l2_first")]:
            del card[key]  # an earlier, shorter run's figures
        card[f"certified_accuracy_l2_first{len(rows)}"] = {
            "protocol": f"CERTIFY n0={args.n0} n={args.n} alpha={args.alpha} seed={args.seed}+index",
            "by_radius_percent": {str(r): round(v, 2) for r, v in cur.items()},
            "interval95_percent": {str(r): [round(v, 1) for v in ci[r]] for r in RADII},
            "seconds_per_point": round(secs / len(rows), 2),
            "process_cpu_seconds_per_point": round(sum(timed) / len(timed), 2) if timed else None,
            "points": f"MNIST test indices 0-{len(rows) - 1}",
            "command": f"python benchmarks/smoothing.py {args.name} --points {args.points} --n {args.n}"
                       + (" --report-only" if args.report_only else "") + " --card",
        }
        path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
