"""Certified L2 accuracy of the shipped 1-Lipschitz model, its empirical robustness under PGD,
and the cost of its certificate next to randomized smoothing's at the same radius.

    python benchmarks/lipschitz.py --points 1000 --card
    python benchmarks/lipschitz.py --points 1000 --checkpoint runs/train-mnist-lip.pt   # a candidate

Certifies the first ``--points`` MNIST test points with ``Lipschitz()`` (one forward pass),
attacks them with L2 PGD (margin loss, 100 steps, 2 restarts) at 1.58, checks no certified point
is broken, and compares seconds and forward passes per point with the sigma 0.50 smoothing run
of benchmarks/smoothing.py (read from runs/smoothing-mnist-cnn-smooth-0.50-n100000.jsonl when
present). ``--checkpoint`` measures a training checkpoint of scripts/train_certified.py
(``--architecture``, by default the shipped entry's) instead of the shipped model, without
touching the card. Anchors at L2 1.58: GloRo (Leino et al. 2021) 62.8% certified, 97.0% clean;
Cohen et al. smoothing sigma 0.50 (LeNet, N = 100k) 61.8%.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import robustlab as rl
from robustlab.certify.lipschitz import Lipschitz, pairwise_constants
from robustlab.models.lipschitz import ARCHITECTURES
from robustlab.threats import LpBall

ROOT = Path(__file__).resolve().parents[1]
RADII = [0.5, 1.0, 1.58, 2.0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--card", action="store_true")
    ap.add_argument("--checkpoint", default=None, help="a runs/train-*.pt checkpoint to measure instead")
    ap.add_argument("--architecture", default=rl.models.zoo.ZOO["mnist-lip"].architecture,
                    choices=sorted(ARCHITECTURES), help="the checkpoint's architecture (default: the shipped one's)")
    args = ap.parse_args()
    if args.card and args.checkpoint:
        raise SystemExit("--card: only for the shipped model, not with --checkpoint")
    torch.set_num_threads(1)
    if args.checkpoint:
        model = ARCHITECTURES[args.architecture]()
        state = torch.load(args.checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        model.eval()
        label = f"{args.checkpoint} (epoch {state['epoch']}, {args.architecture})"
    else:
        model = rl.models.load("mnist-lip")
        label = f"mnist-lip ({rl.models.zoo.ZOO['mnist-lip'].architecture})"
    x, y = rl.data.load("mnist", "test", n=args.points)
    xt, yt = rl.data.load("mnist", "test")
    # the anchors' protocol (GloRo): every one of the 10k test points
    full = Lipschitz()(model, xt, yt, LpBall("l2", 1.58))
    full_ok = full.prediction == yt
    clean10k = float(full_ok.float().mean())
    full_by_r = {r: 100.0 * float((full_ok & (full.radius > r)).float().mean()) for r in RADII}
    last5k = 100.0 * float((full_ok & full.certified)[5000:].float().mean())
    cert = Lipschitz()  # warm-up, then time
    cert(model, x[:10], y[:10], LpBall("l2", 1.58))
    t0 = time.perf_counter()
    res = cert(model, x, y, LpBall("l2", 1.58))
    lip_s = (time.perf_counter() - t0) / args.points
    correct = res.prediction == y
    by_r = {r: 100.0 * float((correct & (res.radius > r)).float().mean()) for r in RADII}
    clean = 100.0 * float(correct.float().mean())

    threat = LpBall("l2", 1.58)
    t0 = time.perf_counter()
    adv = rl.attacks.PGD(threat, steps=100, restarts=2, loss="margin", seed=0)(model, x, y)
    pgd_s = time.perf_counter() - t0
    empirical = 100.0 * (1 - float(adv.success.float().mean()))
    violations = int((adv.success & res.certified).sum())

    pairs = pairwise_constants(model)
    how = "margin / (sqrt 2 L)" if pairs is None else (
        f"per-pair: min_j (z_y - z_j) / K_yj, K_ij in [{float(pairs[~torch.eye(len(pairs), dtype=torch.bool)].min()):.3f}, "
        f"{float(pairs.max()):.3f}] (sqrt 2 L = {2 ** 0.5 * model.lipschitz:.3f})")
    print(f"{label} (L = {model.lipschitz}), first {args.points} MNIST test points; clean on 10k: {100 * clean10k:.2f}%; "
          f"certificate {how}")
    print("| L2 radius | certified accuracy % |")
    print("|---|---|")
    print(f"| 0 (clean) | {clean:.1f} |")
    for r, v in by_r.items():
        print(f"| {r} | {v:.1f} |")
    print(f"all 10k test points: clean {100 * clean10k:.2f}%, certified "
          + " / ".join(f"{v:.1f}" for v in full_by_r.values()) + f"% at L2 {' / '.join(map(str, RADII))} "
          f"(last 5000: {last5k:.1f}% at 1.58)")
    print(f"PGD-L2 1.58 (margin, 100 steps x 2 restarts): robust accuracy {empirical:.1f}% "
          f"(certified {by_r[1.58]:.1f}%), certified-and-broken points: {violations}; {pgd_s:.0f} s")

    smooth_log = ROOT / "runs" / "smoothing-mnist-cnn-smooth-0.50-n100000.jsonl"
    if smooth_log.is_file():
        rows = [json.loads(line) for line in smooth_log.read_text().splitlines()]
        s_s = sum(r["seconds"] for r in rows) / len(rows)
        print(f"cost per point: Lipschitz {1e3 * lip_s:.3f} ms (1 forward pass) vs smoothing sigma 0.50 "
              f"{s_s:.1f} s (100,100 forward passes, {len(rows)} points): {s_s / lip_s:.2e}x")
    if args.card:
        path = ROOT / "src" / "robustlab" / "models" / "weights" / "mnist-lip.json"
        card = json.loads(path.read_text())
        card["lipschitz"] = float(model.lipschitz)
        card["clean_accuracy_test_10k"] = round(clean10k, 4)
        card[f"certified_accuracy_l2_first{args.points}_percent"] = {str(r): round(v, 2) for r, v in by_r.items()}
        card[f"pgd100x2_l2_1.58_robust_accuracy_first{args.points}_percent"] = round(empirical, 2)
        card["certified_accuracy_l2_test_10k_percent"] = {str(r): round(v, 2) for r, v in full_by_r.items()}
        card["certified_accuracy_l2_1.58_last5000_percent"] = round(last5k, 2)
        card["certify_seconds_per_point"] = lip_s
        card["certificate"] = how
        card["command"] = f"python benchmarks/lipschitz.py --points {args.points} --card"
        path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
