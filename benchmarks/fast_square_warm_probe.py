"""fast (its Square warm-started from each point's lowest-margin point) vs a fresh Square-5000 on the
11 mnist-cnn-at points that some torchattacks AutoAttack seed broke and fast's gradient stages
missed (``fast_calibration.py``, first 1000 MNIST test points, Linf 0.3), seeds 0-2.

    python benchmarks/fast_square_warm_probe.py
"""
from __future__ import annotations

import time

import torch

import robustlab as rl
from robustlab.attacks.fast import FastEval
from robustlab.attacks.square import Square

POINTS = [167, 211, 282, 366, 431, 610, 645, 689, 760, 844, 881]


def main() -> None:
    torch.set_num_threads(1)
    model = rl.models.load("mnist-cnn-at")
    x, y = rl.data.load("mnist", "test", n=1000)
    x, y = x[POINTS], y[POINTS]
    threat = rl.LpBall("linf", 0.3)
    print("| seed | fast broke | fast passes | fresh Square-5000 broke | Square queries |")
    print("|---|---|---|---|---|")
    for seed in (0, 1, 2):
        t0 = time.time()
        f = FastEval(threat, seed=seed)(model, x, y)
        s = Square(threat, max_queries=5000, p_init=0.8, seed=seed)(model, x, y)
        print(f"| {seed} | {int(f.success.sum())} of {len(POINTS)} | {f.forward_calls + f.backward_calls:,} | "
              f"{int(s.success.sum())} of {len(POINTS)} | {s.forward_calls:,} |  ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
