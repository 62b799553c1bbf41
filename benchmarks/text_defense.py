"""Defenses for the MR word-CNN, robust accuracy before and after (200 test sentences,
threat words:0.2,sim:0.8,simby:glove; deepwordbug-like, pwws-like, textfooler-like run in order on
the points still robust, the robust accuracy after each):

- ``mr-wordcnn``: no defense;
- ``mr-wordcnn-at``: adversarial training for text (augment with textfooler-like, pwws-like and
  deepwordbug-like examples found on the training split, retrain; scripts/train_text.py);
- ``mr-wordcnn-norm``: the spelling-normalizing front end, attacked adaptively (the attacks query
  the whole pipeline) and, for contrast, by transfer from the bare model (a non-adaptive
  attacker who ignores the front end).

    PYTHONPATH=src python benchmarks/text_defense.py --n 200 --out benchmarks/results/text_defense.json
"""
from __future__ import annotations

import argparse
import json

import torch

import robustlab as rl
from robustlab.evaluation.text import evaluate_text

ATTACKS = ["deepwordbug-like", "pwws-like", "textfooler-like"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threat", default="words:0.2,sim:0.8,simby:glove")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    x, y = rl.data.load("mr", split="test", n=args.n)
    out: dict = {"n": args.n, "threat": args.threat, "attacks": ATTACKS, "models": {}}
    for name in ("mr-wordcnn", "mr-wordcnn-at", "mr-wordcnn-norm"):
        model = rl.models.load(name)
        rep, x_adv, q = evaluate_text(model, x, y, args.threat, ATTACKS)
        row = {"clean_accuracy": rep.clean_accuracy, "robust_accuracy_all": rep.robust_accuracy,
               "after_each_attack": {a.name: a.robust_accuracy for a in rep.attacks},
               "queries_per_sentence": float(q.float().mean()), "seconds": round(rep.seconds, 1)}
        if name.endswith("-norm"):
            base = rl.models.load("mr-wordcnn")
            _, x_base, _ = evaluate_text(base, x, y, args.threat, ATTACKS)
            with torch.no_grad():
                row["robust_accuracy_transfer"] = float((model(x_base).argmax(1) == y).float().mean())
        out["models"][name] = row
        print(name, json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
