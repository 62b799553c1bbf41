"""Why do two ensemble runs disagree on a point? Rerun the single attacks there over many seeds.

    python benchmarks/disagreement_probe.py benchmarks/results/autoattack-1000/at-linf-seed0-run2.json \
        --seeds 8 [--setting at-linf]

Reads a file written by ``autoattack_compare.py --save`` holding robustlab's and torchattacks'
per-point outcomes, takes the points robust to robustlab and not to torchattacks, and runs on
them, alone, robustlab's and torchattacks' APGD-CE, APGD-T and Square-5000 for each seed. If both
libraries break each point in about the same number of seeds, the disagreement is chance (which
seed the ensemble happened to draw), not a difference in strength.
"""
from __future__ import annotations

import argparse
import json

import torch

import robustlab as rl
from autoattack_compare import SETTINGS  # the same settings the saved runs used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("saved")
    ap.add_argument("--setting", default="at-linf", choices=sorted(SETTINGS))
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torchattacks as ta

    torch.set_num_threads(args.threads)
    runs = json.load(open(args.saved))[args.setting]
    ours, theirs = torch.tensor(runs["robustlab"]["robust"]), torch.tensor(runs["torchattacks"]["robust"])
    idx = (ours & ~theirs).nonzero().squeeze(1)
    print(f"points robust to robustlab only: {idx.tolist()}; to torchattacks only: "
          f"{(theirs & ~ours).nonzero().squeeze(1).tolist()}")
    if idx.numel() == 0:
        return
    name, norm, eps = SETTINGS[args.setting]
    model = rl.models.load(name)
    x, y = rl.data.load("mnist", split="test", n=len(ours))
    xs, ys = x[idx], y[idx]
    threat = rl.LpBall(norm, eps)
    tnorm = {"linf": "Linf", "l2": "L2"}[norm]

    def broken(xa: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (model(xa).argmax(dim=1) != ys).int()

    counts: dict[str, torch.Tensor] = {}
    for seed in range(args.seeds):
        entries = {
            "robustlab APGD-CE": lambda: rl.attacks.APGD(threat, loss="ce", seed=seed)(model, xs, ys).x_adv,
            "torchattacks APGD-CE": lambda: ta.APGD(model, norm=tnorm, eps=eps, steps=100, loss="ce", seed=seed)(xs, ys),
            "robustlab APGD-T": lambda: rl.attacks.APGDT(threat, seed=seed)(model, xs, ys).x_adv,
            "torchattacks APGD-T": lambda: ta.APGDT(model, norm=tnorm, eps=eps, steps=100, n_classes=10,
                                                    seed=seed)(xs, ys),
            "robustlab Square-5000": lambda: rl.attacks.Square(threat, max_queries=5000, p_init=0.8,
                                                               seed=seed)(model, xs, ys).x_adv,
            "torchattacks Square": lambda: ta.Square(model, norm=tnorm, eps=eps, n_queries=5000, p_init=0.8,
                                                     seed=seed)(xs, ys),
        }
        for key, run in entries.items():
            counts[key] = counts.get(key, torch.zeros(len(idx), dtype=torch.int64)) + broken(run())
        print(f"seed {seed} done", flush=True)
    print(f"\nseeds (of {args.seeds}) in which each attack alone breaks each point {idx.tolist()}:\n")
    print("| attack | " + " | ".join(f"point {i}" for i in idx.tolist()) + " |")
    print("|---|" + "---|" * len(idx))
    for key, c in counts.items():
        print(f"| {key} | " + " | ".join(str(int(v)) for v in c) + " |")


if __name__ == "__main__":
    main()
