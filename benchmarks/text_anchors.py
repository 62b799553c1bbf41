"""The published anchors on our MR word-CNN (200 test sentences, one CPU thread):

- DeepWordBug (TextAttack docs, LSTM on MR): 78.5% -> 14.5% accuracy, 15.5% of words changed,
  32.7 queries. Ours: ``deepwordbug-like`` with no word cap (DeepWordBug has none), words:1.
- Greedy embedding swaps (TextAttack-Search-Benchmark, LSTM on MR, 659 sentences): lax 75.9% ->
  4.4% in 46.7 queries; strict -> 48.7% in 27.3 queries. Ours, lax: GloVe neighbours
  (cos >= 0.6) + greedy WIR, no word cap; strict: neighbours with cos >= 0.75, at most 20% of the
  words, sentence similarity >= 0.9 (mean GloVe; MiniLM is too slow for 200 sentences on one
  core) - our own strict setting, not theirs (their counter-fitted vectors and USE are not
  available offline).

    PYTHONPATH=src python benchmarks/text_anchors.py --n 200 --out benchmarks/results/text_anchors.json
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import robustlab as rl
from robustlab.attacks.text import (EmbeddingCosine, EmbeddingSwap, GreedyWIR, SentenceSimilarity, StopWords, TextAttack,
                                    Untargeted, recipe)
from robustlab.threats.text import WordBudget


def settings() -> dict[str, TextAttack]:
    lax, strict = WordBudget(words=1.0), WordBudget(words=0.2, sim=0.9, simby="glove")
    out = {"deepwordbug (no word cap)": recipe("deepwordbug-like", lax)}
    for k in (8, 15, 30):
        out[f"greedy embedding lax, k={k}"] = TextAttack(
            Untargeted(), EmbeddingSwap(k=k, min_cos=0.6), [StopWords(), EmbeddingCosine(0.6)], GreedyWIR("delete"),
            threat=lax, name=f"embedding-lax-k{k}")
    out["greedy embedding strict, k=15"] = TextAttack(
        Untargeted(), EmbeddingSwap(k=15, min_cos=0.75), [StopWords(), EmbeddingCosine(0.75),
                                                          SentenceSimilarity(strict.similarity, 0.9)],
        GreedyWIR("delete"), threat=strict, name="embedding-strict")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--model", default="mr-wordcnn")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = rl.models.load(args.model)
    x, y = rl.data.load("mr", split="test", n=args.n)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    out = {"model": args.model, "n": args.n, "clean_accuracy": float(correct.float().mean()), "rows": {}}
    for name, attack in settings().items():
        t0 = time.perf_counter()
        res = attack(model, x, y)
        ok = res.success & correct
        out["rows"][name] = {"accuracy_under_attack": float((correct & ~res.success).float().mean()),
                             "success_rate": float(ok.sum() / correct.sum()),
                             "queries_per_sentence": float(res.queries[correct].float().mean()),
                             "words_changed": float(res.distance[ok].mean()) if ok.any() else 0.0,
                             "seconds": round(time.perf_counter() - t0, 1)}
        print(name, out["rows"][name], flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
