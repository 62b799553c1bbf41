"""Epoch cost of each training recipe against a standard epoch, and against ART's trainers.

    /work/venvs/train/bin/python benchmarks/training_speed.py --n 2000 --repeats 3

One process, one thread, the same model (mnist_cnn), the same N MNIST training points and the
same batch of 100. Each entry trains one epoch from the same seeded initialisation:

- robustlab ``train`` with Standard, FastAT (FGSM + random start), ATTA-1 (one step from the
  carried perturbation, the recipe of ``mnist-cnn-fast``), PGDAT-10 and TRADES-10 (beta 6), no
  per-epoch evaluation (val=None);
- ART 1.x, when importable: AdversarialTrainerMadryPGD (PGD-10, eps 0.3, step 0.075, one random
  start), AdversarialTrainerTRADESPyTorch (its PGD-10, beta 6) and AdversarialTrainerFBFPyTorch
  (eps 0.3), on a PyTorchClassifier around the same model and an Adam optimiser.

The limit of a recipe is its number of forward+backward passes per step: FastAT and ATTA-1 2, PGD-AT-k
k + 1, TRADES-k k + 2 (its outer pass runs clean and adversarial points, twice the rows; its
KL targets need one more forward). Ratios are taken against the standard epoch of the same
repeat; the table shows medians over repeats, in process CPU time (steadier than wall time on a
shared machine) with wall time beside it.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics as st
import time
import warnings

import numpy as np
import torch

import robustlab as rl
from robustlab.defenses.training import ATTA, PGDAT, TRADES, FastAT, Piecewise, Standard, train
from robustlab.threats import LpBall

os.environ.setdefault("TQDM_DISABLE", "1")  # ART's progress bars
T = LpBall("linf", 0.3)
OURS = {
    "robustlab Standard": (Standard(), 1),
    "robustlab FastAT": (FastAT(T, alpha=0.375), 2),
    "robustlab ATTA-1": (ATTA(T, steps=1, step_size=0.1), 2),
    "robustlab PGDAT-10": (PGDAT(T, steps=10), 11),
    "robustlab TRADES-10": (TRADES(T, beta=6.0, steps=10), 12),
}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return rl.models.mnist_cnn()


def _ours(recipe, x, y) -> float:
    m = _model()
    train(m, (x, y), recipe, epochs=1, batch_size=100, lr=Piecewise(1e-3, ()), seed=0)
    return float((m(x[:500]).argmax(1) == y[:500]).float().mean())


def _art_entries():
    try:
        from art.attacks.evasion import ProjectedGradientDescentPyTorch
        from art.defences.trainer import (AdversarialTrainerFBFPyTorch, AdversarialTrainerMadryPGD,
                                          AdversarialTrainerTRADESPyTorch)
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        return {}

    class Whole(torch.nn.Module):
        """ART's PyTorchClassifier returns every layer's output for an nn.Sequential, and its
        TRADES trainer then reads the wrong one; wrapped, the model is one layer to it."""

        def __init__(self) -> None:
            super().__init__()
            self.net = _model()

        def forward(self, x):
            return self.net(x)

    def clf():
        m = Whole()
        return m, PyTorchClassifier(m, loss=torch.nn.CrossEntropyLoss(), optimizer=torch.optim.Adam(m.parameters(), 1e-3),
                                    input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 1.0))

    def madry(x, y):
        m, c = clf()
        AdversarialTrainerMadryPGD(c, nb_epochs=1, batch_size=100, eps=0.3, eps_step=0.075, max_iter=10,
                                   num_random_init=1).fit(x, y)
        return m

    def trades(x, y):
        m, c = clf()
        atk = ProjectedGradientDescentPyTorch(c, norm=np.inf, eps=0.3, eps_step=0.075, max_iter=10,
                                              num_random_init=1, batch_size=100, verbose=False)
        AdversarialTrainerTRADESPyTorch(c, atk, beta=6.0).fit(x, y, nb_epochs=1, batch_size=100)
        return m

    def fbf(x, y):
        m, c = clf()
        AdversarialTrainerFBFPyTorch(c, eps=0.3).fit(x, y, nb_epochs=1, batch_size=100)
        return m

    return {"ART MadryPGD-10": (madry, 11), "ART TRADES-10": (trades, 12), "ART FBF": (fbf, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="training points (one epoch = n / 100 steps)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    x, y = rl.data.load("mnist", "train", n=args.n)
    xn, yn = x.numpy(), np.eye(10, dtype=np.float32)[y.numpy()]  # ART trainers take one-hot labels
    art = _art_entries()
    entries: dict[str, tuple] = {}
    for name, (recipe, passes) in OURS.items():
        entries[name] = ((lambda k, r=recipe: _ours(r, x[:k], y[:k])), passes)
    for name, (fn, passes) in art.items():
        entries[name] = ((lambda k, f=fn: f(xn[:k], yn[:k])), passes)
    cpu: dict[str, list[float]] = {k: [] for k in entries}
    wall: dict[str, list[float]] = {k: [] for k in entries}
    names = list(entries)
    for name in names:  # warm up each code path (allocator, first-call dispatch) untimed
        entries[name][0](200)
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            c0, w0 = time.process_time(), time.perf_counter()
            entries[name][0](args.n)
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
        print(f"repeat {r + 1}/{args.repeats} done", flush=True)
    std_c = [c for c in cpu["robustlab Standard"]]
    print(f"\nmnist_cnn, {args.n} MNIST points, batch 100, {args.threads} thread(s), torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, repeats {args.repeats} (medians)\n")
    print("| trainer | passes | epoch CPU s | epoch wall s | / standard (CPU) | / passes | vs robustlab same recipe |")
    print("|---|---|---|---|---|---|---|")
    same = {"ART MadryPGD-10": "robustlab PGDAT-10", "ART TRADES-10": "robustlab TRADES-10", "ART FBF": "robustlab FastAT"}
    for name in names:
        ratio = st.median(c / s for c, s in zip(cpu[name], std_c))
        passes = entries[name][1]
        peer = same.get(name)
        vs = f"{st.median(a / b for a, b in zip(cpu[name], cpu[peer])):.2f}x" if peer else ""
        print(f"| {name} | {passes} | {st.median(cpu[name]):.2f} | {st.median(wall[name]):.2f} | {ratio:.2f} | "
              f"{ratio / passes:.2f} | {vs} |")


if __name__ == "__main__":
    main()
