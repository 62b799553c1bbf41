"""The content filter under rephrasing: clean detection and false-positive rates of
``filter-minilm`` on the SMS Spam Collection test split, the bypass rate of ``filter-evasion``
(goal: the filter says "ham") at a MiniLM similarity floor, and the same after the defense
(``filter-minilm-norm``: the normalizing front end), for a transfer attacker (messages found
against the bare filter) and an adaptive one (attacking the defended filter itself).

    PYTHONPATH=src python benchmarks/text_filter.py --n-attack 40 --out benchmarks/results/text_filter.json

Needs robustlab[text]. One CPU thread.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import robustlab as rl
from robustlab.attacks.text import recipe
from robustlab.threats.text import WordBudget


def rates(model, x, y) -> dict[str, float]:
    with torch.no_grad():
        pred = torch.cat([model(x[i: i + 256]).argmax(1) for i in range(0, len(x), 256)])
    return {"detection_rate": float((pred[y == 1] == 1).float().mean()),
            "false_positive_rate": float((pred[y == 0] == 1).float().mean()), "pred": pred}


def bypass(model, spam, threat, max_queries):
    attack = recipe("filter-evasion", threat, max_queries=max_queries)
    t0 = time.perf_counter()
    res = attack(model, spam, torch.ones(len(spam), dtype=torch.int64))
    changed = [i for i, (a, o) in enumerate(zip(res.x_adv, spam)) if a != o]
    sim = threat.similarity([res.x_adv[i] for i in changed], [spam[i] for i in changed]) if changed else torch.ones(0)
    return res, {"bypass_rate": float(res.success.float().mean()), "queries_per_message": float(res.queries.float().mean()),
                 "words_changed": float(res.distance[res.success].mean()) if res.success.any() else 0.0,
                 "min_similarity": float(sim.min()) if len(sim) else 1.0, "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-attack", type=int, default=40, help="flagged spam messages attacked")
    ap.add_argument("--max-queries", type=int, default=300)
    ap.add_argument("--threats", default="words:0.2,sim:0.8;words:0.2,sim:0.8,edits:word")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    x, y = rl.data.load("sms", split="test")
    bare, norm = rl.models.load("filter-minilm"), rl.models.load("filter-minilm-norm")
    out: dict = {"n_test": len(x), "n_spam": int(y.sum())}
    clean_bare, clean_norm = rates(bare, x, y), rates(norm, x, y)
    out["clean"] = {k: v for k, v in clean_bare.items() if k != "pred"}
    out["clean_defended"] = {k: v for k, v in clean_norm.items() if k != "pred"}
    flagged = [i for i in range(len(x)) if y[i] == 1 and clean_bare["pred"][i] == 1 and clean_norm["pred"][i] == 1]
    spam = [x[i] for i in flagged[: args.n_attack]]
    out["attacked"] = len(spam)
    for spec in args.threats.split(";"):
        threat = WordBudget.parse(spec)
        res, row = bypass(bare, spam, threat, args.max_queries)
        found = [a for a, ok in zip(res.x_adv, res.success.tolist()) if ok]
        with torch.no_grad():
            still = (norm(found).argmax(1) == 0).float().mean().item() if found else 0.0
        row["transfer_to_defended"] = still * row["bypass_rate"]
        _, row_adaptive = bypass(norm, spam, threat, args.max_queries)
        out[spec] = {"undefended": row, "defended_adaptive": row_adaptive,
                     "examples": [[o, a] for o, a, ok in zip(spam, res.x_adv, res.success.tolist()) if ok][:5]}
        print(spec, json.dumps(out[spec], indent=1), flush=True)
    print(json.dumps(out, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    main()
