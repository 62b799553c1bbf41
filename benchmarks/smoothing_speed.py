"""Throughput of CERTIFY: robustlab vs the base model's own forward, a plain Cohen-style loop,
and ART's PyTorchRandomizedSmoothing.certify; same model, same points, same n0 / n, one thread.

    /work/venvs/smooth/bin/python benchmarks/smoothing_speed.py --points 5 --n 20000

(the venv adds adversarial-robustness-toolbox==1.20.1 and statsmodels; without ART its row is
skipped). Samples per second = points * (n0 + n) / seconds. "forward" is the base model alone on
pre-drawn noisy batches of the same size: the ceiling any certify can reach. Rounds interleave
the methods and the best round of each is kept (the machine is shared).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import beta, norm

import robustlab as rl
from robustlab.certify.smoothing import Smoothed


def forward_only(model, x, n_total: int, batch_size: int, sigma: float) -> float:
    noisy = torch.randn((batch_size, *x.shape[1:])) * sigma + x[0]
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(x.shape[0]):
            left = n_total
            while left > 0:
                m = min(left, batch_size)
                model(noisy[:m]).argmax(1)
                left -= m
    return time.perf_counter() - t0


def plain_loop(model, x, n0: int, n: int, batch_size: int, sigma: float, alpha: float):
    """A straightforward CERTIFY as in Cohen et al.'s reference code: per point, repeat it into
    a batch, add randn_like noise, count argmaxes with numpy, Clopper-Pearson with scipy."""

    def counts(xi, num):
        c = np.zeros(10, dtype=int)
        with torch.no_grad():
            left = num
            while left > 0:
                m = min(left, batch_size)
                batch = xi.repeat((m, 1, 1, 1))
                pred = model(batch + torch.randn_like(batch) * sigma).argmax(1)
                c += np.bincount(pred.numpy(), minlength=10)
                left -= m
        return c

    out = []
    for xi in x:
        guess = int(counts(xi, n0).argmax())
        k = counts(xi, n)[guess]
        pa = beta.ppf(alpha, k, n - k + 1) if k > 0 else 0.0
        out.append((guess, sigma * norm.ppf(pa)) if pa > 0.5 else (-1, 0.0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mnist-cnn-smooth-0.25")
    ap.add_argument("--points", type=int, default=5)
    ap.add_argument("--n0", type=int, default=100)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = rl.models.load(args.model)
    base, sigma = g.model, g.sigma
    x, _ = rl.data.load("mnist", "test", n=args.points)
    total = args.points * (args.n0 + args.n)
    ours = Smoothed(base, sigma, batch_size=args.batch_size, seed=0)

    methods = {
        "forward (base model alone)": lambda: forward_only(base, x, args.n0 + args.n, args.batch_size, sigma),
        "robustlab Smoothed.certify": lambda: ours.certify(x, args.n0, args.n, 0.001),
        "plain Cohen-style loop": lambda: plain_loop(base, x, args.n0, args.n, args.batch_size, sigma, 0.001),
    }
    try:
        from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

        art = PyTorchRandomizedSmoothing(base, torch.nn.CrossEntropyLoss(), (1, 28, 28), 10, device_type="cpu",
                                         sample_size=args.n0, scale=sigma, alpha=0.001)
        xn = x.numpy()
        methods["ART 1.20.1 PyTorchRandomizedSmoothing.certify"] = lambda: art.certify(xn, n=args.n, batch_size=args.batch_size)
    except ImportError:
        print("(ART not importable: its row is skipped)")

    best: dict[str, float] = {k: float("inf") for k in methods}
    for _ in range(args.rounds):
        for k, fn in methods.items():
            t0 = time.perf_counter()
            res = fn()
            dt = time.perf_counter() - t0 if not isinstance(res, float) else res
            best[k] = min(best[k], dt)
    fwd = total / best["forward (base model alone)"]
    print(f"{args.model}: {args.points} points x (n0 {args.n0} + n {args.n}) = {total} samples, "
          f"batch {args.batch_size}, 1 thread, best of {args.rounds} rounds")
    print("| method | seconds | samples/s | forward throughput / method's |")
    print("|---|---|---|---|")
    for k, s in best.items():
        print(f"| {k} | {s:.2f} | {total / s:.0f} | {fwd / (total / s):.3f}x |")


if __name__ == "__main__":
    main()
