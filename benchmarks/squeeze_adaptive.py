"""Feature squeezing on MNIST: how far a binarisation-aware adaptive attack gets, by budget.

    python benchmarks/squeeze_adaptive.py [--base mnist-cnn] [--n 200] [--eps 0.3,0.35,0.4,0.45,0.5]
        [--out benchmarks/results/defenses/squeeze-adaptive.jsonl]

Xu et al. 2018's MNIST squeezers are 1-bit depth and a 2x2 median. The 1-bit squeezer rounds
every pixel to 0 or 1 (``ops.bit_depth``, halves to even: 0.5 -> 0), so within an Linf ball of
radius eps only the pixels with |x - 0.5| < eps (about 47 of 784 per MNIST test image at 0.3,
137 at 0.5) can change their squeezed bit; every other bit is fixed whatever the attacker does.
The attack is ``robustlab.defenses.squeeze_attack`` (see its doc): stage 1 picks a
misclassified reachable binary image b (this alone attacks ``BitDepth(model, 1)``), stage 2
finds x' rounding to b that the squeezing detector lets through.

Every success is judged by the deployed ``mnist-cnn+squeeze`` (Detected: a rejected point is
defended, a clean point rejected is an error) and the deployed ``BitDepth``; points are
appended to ``--out`` per (eps, chunk) so a killed run resumes.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

import robustlab as rl
from robustlab.attacks.losses import is_success
from robustlab.defenses import ops
from robustlab.defenses.squeeze_attack import attack_bits, attack_squeezing, bit_sets
from robustlab.defenses.transforms import BitDepth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="mnist-cnn", choices=["mnist-cnn", "mnist-cnn-at"])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--eps", default="0.3,0.35,0.4,0.45,0.5")
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--out", default="benchmarks/results/defenses/squeeze-adaptive.jsonl")
    ap.add_argument("--summarise", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    done = {}
    if os.path.exists(a.out):
        with open(a.out) as f:
            for line in f:
                r = json.loads(line)
                done[(r["base"], r["eps"], r["start"], r["n"], r["restarts"])] = r
    x_all, y_all = rl.data.load("mnist", "test", n=a.n)
    model = rl.models.load(a.base)
    for p in model.parameters():
        p.requires_grad_(False)
    defended = rl.models.load(f"{a.base}+squeeze")
    bitdepth = BitDepth(model, 1).eval()
    recs = []
    for eps in [float(e) for e in a.eps.split(",")]:
        for s in range(0, a.n, a.chunk):
            x, y = x_all[s : s + a.chunk], y_all[s : s + a.chunk]
            key = (a.base, eps, s, len(y), a.restarts)
            if key in done:
                recs.append(done[key])
                continue
            if a.summarise:
                continue
            t0, c0 = time.time(), time.process_time()
            b = attack_bits(model, x, y, eps, restarts=a.restarts)
            free, _ = bit_sets(x, eps)
            with torch.no_grad():
                clean_bd = bitdepth(x).argmax(1) == y
                clean_det = defended(x).argmax(1) == y
                # The deployed BitDepth on an x' that rounds to b: b clipped into the eps box on b's side.
                x_bd = attack_squeezing(defended, x, y, b, eps, steps=0)
                bd_rob = clean_bd & (bitdepth(x_bd).argmax(1) == y)
            x_det = attack_squeezing(defended, x, y, b, eps)
            with torch.no_grad():
                det_rob = clean_det & ~is_success(defended(x_det), y, None, reject=True)
                assert bool((ops.bit_depth(x_det, 1) == b).all()), "stage 2 left b's rounding"
                assert float((x_det - x).abs().max()) <= eps + 1e-6
            rec = {"base": a.base, "eps": eps, "start": s, "n": len(y), "restarts": a.restarts,
                   "free_pixels": free.flatten(1).sum(1).tolist(), "clean_bitdepth": clean_bd.int().tolist(),
                   "bitdepth_robust": bd_rob.int().tolist(), "clean_squeeze": clean_det.int().tolist(),
                   "squeeze_robust": det_rob.int().tolist(),
                   "cpu_s": round(time.process_time() - c0, 1), "wall_s": round(time.time() - t0, 1)}
            print({k: (sum(v) if isinstance(v, list) else v) for k, v in rec.items()}, flush=True)
            with open(a.out, "a") as f:
                f.write(json.dumps(rec) + "\n")
            recs.append(rec)
    print("| eps | n | free pixels (mean) | BitDepth(1) clean % | robust % | squeeze clean % | combined robust % | CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for eps in sorted({r["eps"] for r in recs}):
        rs = [r for r in recs if r["eps"] == eps]
        cat = lambda k: [v for r in rs for v in r[k]]  # noqa: E731
        n = len(cat("bitdepth_robust"))
        pct = lambda k: round(100 * sum(cat(k)) / n, 1)  # noqa: E731
        print(f"| {eps} | {n} | {sum(cat('free_pixels')) / n:.1f} | {pct('clean_bitdepth')} | {pct('bitdepth_robust')} | "
              f"{pct('clean_squeeze')} | {pct('squeeze_robust')} | {sum(r['cpu_s'] for r in rs):.0f} |")


if __name__ == "__main__":
    main()
