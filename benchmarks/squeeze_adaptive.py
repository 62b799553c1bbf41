"""Feature squeezing on MNIST: how far a binarisation-aware adaptive attack gets, by budget.

    python benchmarks/squeeze_adaptive.py [--base mnist-cnn] [--n 200] [--eps 0.3,0.35,0.4,0.45,0.5]
        [--out benchmarks/results/defenses/squeeze-adaptive.jsonl]

Xu et al. 2018's MNIST squeezers are 1-bit depth and a 2x2 median. The 1-bit squeezer rounds
every pixel to 0 or 1 (``ops.bit_depth``, halves to even: 0.5 -> 0), so within an Linf ball of
radius eps only the pixels with |x - 0.5| < eps (about 47 of 784 per MNIST test image at 0.3,
137 at 0.5) can change their squeezed bit; every other bit is fixed whatever the attacker does.
A gradient attack through a straight-through rounding (BPDA) spends its steps on the fixed
pixels too. This script attacks the squeezed image directly, in two stages, per point:

1. **Squeezed image.** Search the reachable binary images b (fixed bits, free bits chosen):
   relaxed PGD on the free bits (b in [0, 1] on the free pixels, margin loss, ``restarts``
   starts, the rounded iterate kept when its margin is lowest), then greedy bit flips (every
   single flip of a free bit evaluated exactly, the best one taken, until the margin is below
   ``-kappa`` or nothing lowers it). This alone is the attack on ``BitDepth(model, 1)``.
2. **Detector.** With b fixed, every x' whose pixels stay on b's side of 0.5 (and in the eps
   box) has bit_depth(x') = b exactly, so the squeezer's output is a constant. PGD on x' in that
   set minimises He et al. 2017's joint objective: a classifier hinge (some wrong class above
   the true one) plus the detector's score above a margin below its threshold, both exact (the
   median is differentiable almost everywhere), from x' = b clipped to the set.

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
import torch.nn.functional as F
from torch import Tensor, nn

import robustlab as rl
from robustlab.attacks.losses import is_success
from robustlab.defenses import ops
from robustlab.defenses.transforms import BitDepth


def bit_sets(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(free, fixed_bit), both (N, C, H, W): which pixels' 1-bit value an Linf-eps change can
    set either way, and the bit of the others (the rounding of x, which no change can move)."""
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    can0 = ops.bit_depth(lo, 1) == 0
    can1 = ops.bit_depth(hi, 1) == 1
    return can0 & can1, ops.bit_depth(x, 1)


def _margin(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """(N,) z_y - max_{j != y} z_j (negative: misclassified)."""
    z = model(x)
    other = z.scatter(1, y[:, None], float("-inf")).amax(1)
    return z.gather(1, y[:, None]).squeeze(1) - other


def attack_bits(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, restarts: int = 4, steps: int = 60,
                kappa: float = 3.0, max_flips: int = 60, seed: int = 0, joint: bool = True) -> Tensor:
    """(N, C, H, W) binary images reachable by 1-bit rounding of the eps ball around ``x``,
    chosen to lower the model's margin (stage 1 of the module doc). ``joint``: the objective is
    the margin on b plus the margin on b clipped into the eps box (the x' stage 2 starts from),
    so that b is chosen where the unsqueezed input can be made wrong too."""
    free, fixed = bit_sets(x, eps)
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)

    def objective(b: Tensor, y: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
        m = _margin(model, b, y)
        return m + _margin(model, torch.min(torch.max(b, lo), hi), y) if joint else m

    g = torch.Generator().manual_seed(seed)
    best_b = fixed.clone()
    with torch.no_grad():
        best_m = objective(fixed, y, lo, hi)
    for r in range(restarts):
        u = fixed.clone() if r == 0 else torch.rand(x.shape, generator=g)
        u = torch.where(free, u, fixed)
        for _ in range(steps):
            u.requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(torch.where(free, u, fixed), y, lo, hi).sum(), u)
            with torch.no_grad():
                u = torch.where(free, (u - 0.1 * grad.sign()).clamp(0, 1), fixed)
                b = torch.where(free, (u > 0.5).float(), fixed)
                m = objective(b, y, lo, hi)
                better = m < best_m
                best_b[better], best_m[better] = b[better], m[better]
    # Greedy flips of single free bits, exact objective, point by point.
    with torch.no_grad():
        for i in range(len(x)):
            idx = free[i].flatten().nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            b = best_b[i].flatten().clone()
            m = float(best_m[i])
            rows = torch.arange(idx.numel())
            for _ in range(max_flips):
                if m < -kappa:
                    break
                cand = b.repeat(idx.numel(), 1)
                cand[rows, idx] = 1 - cand[rows, idx]
                ms = objective(cand.view(-1, *x.shape[1:]), y[i].repeat(idx.numel()), lo[i : i + 1], hi[i : i + 1])
                j = int(ms.argmin())
                if float(ms[j]) >= m:
                    break
                b, m = cand[j], float(ms[j])
            best_b[i], best_m[i] = b.view(x.shape[1:]), m
    return best_b


def attack_detector(defended: nn.Module, x: Tensor, y: Tensor, b: Tensor, eps: float, *, steps: int = 200,
                    step: float = 0.01) -> Tensor:
    """Stage 2 of the module doc: x' with bit_depth(x') = b, a wrong class and a quiet detector."""
    model, det = defended.model, defended.detector
    half = torch.tensor(0.5)
    up = torch.nextafter(half, torch.tensor(1.0))  # the smallest value that rounds to 1
    lo = torch.where(b > 0.5, torch.maximum((x - eps).clamp(0, 1), up), (x - eps).clamp(0, 1))
    hi = torch.where(b > 0.5, (x + eps).clamp(0, 1), torch.minimum((x + eps).clamp(0, 1), half))
    lo = torch.minimum(lo, hi)  # pixels whose bit is fixed already satisfy it; guard rounding
    with torch.no_grad():
        p_b = F.softmax(model(b), 1)
    xa = torch.min(torch.max(b, lo), hi)
    best = xa.clone()
    with torch.no_grad():
        best_ok = ~is_success(defended(best), y, None, reject=True)
    for k in range(steps):
        xa.requires_grad_(True)
        # Soft-label cross-entropy towards p(b) for x' and for its median: at the optimum both
        # predict exactly p(b), so both L1 terms of the score vanish and x' is classified as b is.
        logp = F.log_softmax(model(xa), 1)
        logp_med = F.log_softmax(model(ops.median_filter(xa, det.median_size)), 1)
        loss = -(p_b * (logp + logp_med)).sum(1)
        (grad,) = torch.autograd.grad(loss.sum(), xa)
        with torch.no_grad():
            size = step if k < steps // 2 else step / 5
            xa = torch.min(torch.max(xa - size * grad.sign(), lo), hi)
            ok = ~is_success(defended(xa), y, None, reject=True)
            won = best_ok & ~ok
            best[won], best_ok = xa[won], best_ok & ok
    return best


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
                x_bd = attack_detector(defended, x, y, b, eps, steps=0)
                bd_rob = clean_bd & (bitdepth(x_bd).argmax(1) == y)
            x_det = attack_detector(defended, x, y, b, eps)
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
