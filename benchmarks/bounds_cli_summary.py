"""Clean | certified | empirical robust accuracy over the points stored so far by sharded runs of
``robustlab evaluate --certify ... --store SHARD.db`` (each shard one --start/--n slice):

    python benchmarks/bounds_cli_summary.py /work/runs_bounds/cli/shard0.db /work/runs_bounds/cli/shard500.db

Reads the store's per-sample ``outcomes`` and ``certificates`` tables (finished batches only);
also counts points certified and broken (must be 0).
"""
from __future__ import annotations

import sqlite3
import sys


def main() -> None:
    n = clean = cert = robust = both = 0
    for path in sys.argv[1:]:
        db = sqlite3.connect(path)
        certified = {idx for idx, ok in db.execute("select idx, certified from certificates") if ok}
        for idx, ok, rob in db.execute("select idx, clean_correct, robust from outcomes"):
            n += 1
            clean += bool(ok)
            robust += bool(rob)
            cert += idx in certified
            both += (idx in certified) and not rob
    if n == 0:
        print("points 0: no finished batch stored yet")
        return
    print(f"points {n}: clean {100 * clean / n:.2f}% | certified {100 * cert / n:.2f}% | "
          f"empirical robust {100 * robust / n:.2f}% | certified but broken {both}")


if __name__ == "__main__":
    main()
