"""Detection of non-adaptive adversarial examples, per attack and per shipped detector.

    python benchmarks/detection_rates.py [--base mnist-cnn] [--n 1000] [--n-cw 300]
        [--save benchmarks/results/defenses/detection-mnist-cnn.json]

On the first ``n`` MNIST test points: adversarial examples made against the bare classifier (the
detector unseen: Xu et al. 2018's and Carlini & Wagner 2017's non-adaptive setting) by FGSM,
PGD-40 and APGD-CE-100 at Linf 0.3, and Carlini-Wagner L2 (100 Adam steps, 5 binary-search
steps, kappa 0, minimal distance) on the first ``n_cw``; each shipped detector ``<base>+{squeeze, mahalanobis, lid,
binary}`` scores the clean points and the successful examples. Reported per (detector, attack):
the detection rate at the shipped threshold (5% FPR on held-out clean data), the false-positive
rate measured on these clean points, and the ROC AUC of clean against successful-adversarial
scores (``defenses.detection_summary``). Process CPU time per attack is recorded.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch import Tensor, nn

import robustlab as rl
from robustlab.attacks import APGD, FGSM, PGD, CarliniWagner
from robustlab.defenses import detection_summary

DETECTORS = ("squeeze", "mahalanobis", "lid", "binary")


def batched(fn, x: Tensor, size: int = 250) -> Tensor:
    return torch.cat([fn(x[i : i + size]) for i in range(0, len(x), size)])


def adversarial(attack, model: nn.Module, x: Tensor, y: Tensor, size: int = 250) -> tuple[Tensor, Tensor]:
    xs, ss = [], []
    for i in range(0, len(x), size):
        r = attack(model, x[i : i + size], y[i : i + size])
        xs.append(r.x_adv.detach())
        ss.append(r.success)
    return torch.cat(xs), torch.cat(ss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="mnist-cnn", choices=["mnist-cnn", "mnist-cnn-at"])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-cw", type=int, default=300)
    ap.add_argument("--save", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = rl.models.load(a.base)
    x, y = rl.data.load("mnist", "test", n=a.n)
    with torch.no_grad():
        ok = batched(model, x).argmax(1) == y
    linf = rl.LpBall("linf", 0.3)
    attacks = [("FGSM", FGSM(linf), a.n), ("PGD-40", PGD(linf, steps=40, seed=0), a.n),
               ("APGD-CE-100", APGD(linf, steps=100, seed=0), a.n),
               ("CW-L2", CarliniWagner(rl.LpBall("l2", 10.0), steps=100, binary_search_steps=5, minimal=True), a.n_cw)]
    dets = {d: rl.models.load(f"{a.base}+{d}") for d in DETECTORS}
    clean_scores = {}
    with torch.no_grad():
        for d, defended in dets.items():
            clean_scores[d] = batched(lambda b, dd=defended: dd.detector.score(model, b), x)
    rows = []
    for name, attack, n in attacks:
        c0 = time.process_time()
        x_adv, success = adversarial(attack, model, x[:n], y[:n])
        cpu = time.process_time() - c0
        for d, defended in dets.items():
            with torch.no_grad():
                sa = batched(lambda b, dd=defended: dd.detector.score(model, b), x_adv)
            s = detection_summary(name, clean_scores[d][:n], sa, success & ok[:n], defended.threshold)
            row = {"detector": d, "attack": name, "n": n, "n_adversarial": s.n_adversarial,
                   "detection": round(100 * s.detection_rate, 1), "fpr": round(100 * s.false_positive_rate, 1),
                   "auc": round(s.auc, 4), "attack_cpu_s": round(cpu, 1)}
            if name == "CW-L2":
                row["median_l2"] = round(float((x_adv - x[:n]).flatten(1).norm(dim=1)[success & ok[:n]].median()), 3)
            print(row, flush=True)
            rows.append(row)
    print("| detector | attack | n | successful examples | detection % @ FPR % | ROC AUC |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['detector']} | {r['attack']} | {r['n']} | {r['n_adversarial']} | {r['detection']} @ {r['fpr']} | "
              f"{r['auc']} |")
    if a.save:
        with open(a.save, "w") as f:
            json.dump({"rows": rows, "base": a.base, "n": a.n, "n_cw": a.n_cw, "torch": torch.__version__,
                       "platform": platform.platform()}, f, indent=1)


if __name__ == "__main__":
    main()
