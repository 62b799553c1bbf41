"""Robust accuracy of robustlab's standard ensemble and torchattacks' AutoAttack over seeds.

    python benchmarks/autoattack_seeds.py benchmarks/results/autoattack-1000/at-linf-*.json

Reads the JSON files ``autoattack_compare.py --save`` writes (one or more entries per file, with
the seed in the file name as ``seedN``) and prints, per implementation and seed, the robust
accuracy and passes, their means, and the per-point worst case over the seeds (a point counts
as robust only if it survived every seed). On an adversarially trained MNIST model single
points fall to Square or APGD-T by chance, so one seed on 1000 points moves by a few tenths of
a percentage point; the mean over seeds is the fair comparison.
"""
from __future__ import annotations

import json
import re
import statistics as st
import sys
from collections import defaultdict


def main(paths: list[str]) -> None:
    runs: dict[str, dict[int, dict]] = defaultdict(dict)
    for path in paths:
        m = re.search(r"seed(\d+)", path)
        seed = int(m.group(1)) if m else 0
        for setting in json.load(open(path)).values():
            for impl, r in setting.items():
                runs[impl].setdefault(seed, r)  # the first file naming a seed wins
    print("| implementation | seed | robust acc | fwd+bwd passes |")
    print("|---|---|---|---|")
    for impl, by_seed in sorted(runs.items()):
        for seed, r in sorted(by_seed.items()):
            print(f"| {impl} | {seed} | {r['robust_acc']:.2%} | {r['forward'] + r['backward']:,} |")
    print("\n| implementation | seeds | mean robust acc | worst case over seeds, per point | mean passes |")
    print("|---|---|---|---|---|")
    for impl, by_seed in sorted(runs.items()):
        rs = list(by_seed.values())
        worst = [all(v) for v in zip(*(r["robust"] for r in rs))]
        print(f"| {impl} | {len(rs)} | {st.mean(r['robust_acc'] for r in rs):.2%} | {sum(worst) / len(worst):.2%} | "
              f"{st.mean(r['forward'] + r['backward'] for r in rs):,.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
