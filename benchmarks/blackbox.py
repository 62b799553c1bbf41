"""Black-box attacks side by side with peer libraries, on the shipped standard MNIST model.

    python benchmarks/blackbox.py --n 500 --hsj-n 100 --threads 1

1. Square, Linf eps 0.3, 5000 queries: robustlab vs torchattacks 3.5.1 (its attack_single_run,
   which returns per-sample queries). Success rate over the clean-correct points and median
   queries over the broken ones; both libraries' counts include the clean query.
2. HopSkipJump, L2, minimum norm: median L2 distance after 1k / 5k / 10k queries per point,
   robustlab (one run per budget: what the attack returns under that budget) vs foolbox 3.3.4
   (one run; a wrapper counts its model calls, each of which carries the whole batch, and
   records the closest misclassified point queried so far, which is generous to foolbox).
   Points with nothing found count as infinitely far.

Prints a markdown table; ``--out`` also writes it to a file. Peers are imported here only.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time

import torch
from torch import nn

import robustlab as rl
from robustlab.attacks.decision import HopSkipJump
from robustlab.attacks.square import Square


def median(t: torch.Tensor) -> float:
    return float(t.float().median()) if t.numel() else math.nan


def fmt(v: float, nd: int = 3) -> str:
    return "inf" if v == math.inf else ("-" if v != v else f"{v:.{nd}f}")


def square_ours(model, x, y, queries: int, seed: int):
    t = time.time()
    res = Square(rl.LpBall("linf", 0.3), max_queries=queries, p_init=0.8, seed=seed)(model, x, y)
    secs = time.time() - t
    with torch.no_grad():
        ok = model(res.x_adv).argmax(1) != y
    assert torch.equal(ok, res.success)
    return ok, res.queries, secs


def square_torchattacks(model, x, y, queries: int, seed: int):
    import torchattacks

    atk = torchattacks.Square(model, norm="Linf", eps=0.3, n_queries=queries, n_restarts=1, p_init=0.8,
                              loss="margin", resc_schedule=True, seed=seed)
    t = time.time()
    atk.init_hyperparam(x)
    torch.random.manual_seed(seed)
    n_q, adv = atk.attack_single_run(x.clone(), y.clone())
    secs = time.time() - t
    with torch.no_grad():
        ok = model(adv).argmax(1) != y
    dist = (adv - x).abs().flatten(1).amax(1)
    assert float(dist.max()) <= 0.3 + 1e-5
    return ok, n_q.long() + 1, secs  # + the clean query torchattacks' perturb() makes


class Tracker(nn.Module):
    """Counts calls (each with the whole batch) and keeps, per point, the L2 distance of the
    closest misclassified input queried so far; snapshots it at the given call counts."""

    def __init__(self, model, x, y, checkpoints, stop_at):
        super().__init__()
        self.model, self.x, self.y = model, x, y
        self.best = torch.full((x.shape[0],), math.inf)
        self.calls = 0
        self.checkpoints = sorted(checkpoints)
        self.snap: dict[int, torch.Tensor] = {}
        self.stop_at = stop_at

    def forward(self, xb):
        if xb.shape[0] != self.x.shape[0]:
            raise RuntimeError("the peer sent a partial batch; its per-point queries cannot be counted")
        if self.calls >= self.stop_at:
            raise StopIteration
        out = self.model(xb)
        self.calls += 1
        with torch.no_grad():
            adv = out.argmax(1) != self.y
            d = (xb - self.x).flatten(1).norm(dim=1)
            self.best = torch.where(adv & (d < self.best), d, self.best)
        for c in self.checkpoints:
            if self.calls == c:
                self.snap[c] = self.best.clone()
        return out


def hsj_foolbox(model, x, y, budgets, seed: int):
    import foolbox as fb

    torch.manual_seed(seed)
    tr = Tracker(model, x, y, budgets, max(budgets))
    fmodel = fb.PyTorchModel(tr.eval(), bounds=(0, 1))
    atk = fb.attacks.HopSkipJumpAttack(steps=1000, initial_gradient_eval_steps=100, max_gradient_eval_steps=10000,
                                       gamma=1.0, constraint="l2")
    t = time.time()
    try:
        atk.run(fmodel, x, fb.criteria.Misclassification(y))
    except StopIteration:
        pass
    secs = time.time() - t
    for b in budgets:  # if it stopped early, the last state holds
        tr.snap.setdefault(b, tr.best.clone())
    return tr.snap, secs


def hsj_ours(model, x, y, budget: int, seed: int, init: str):
    t = time.time()
    res = HopSkipJump("l2", max_queries=budget, seed=seed, init=init)(model, x, y)
    secs = time.time() - t
    with torch.no_grad():
        ok = model(res.x_adv).argmax(1) != y
    assert torch.equal(ok, res.success) and int(res.queries.max()) <= budget
    d = torch.where(res.success, res.distance, torch.full_like(res.distance, math.inf))
    return d, secs


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="first N MNIST test points for Square")
    ap.add_argument("--hsj-n", type=int, default=500, help="first N test points for HopSkipJump")
    ap.add_argument("--square-queries", type=int, default=5000)
    ap.add_argument("--budgets", default="1000,5000,10000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default="", help="comma list of: square, hsj, hsj-noise, foolbox, torchattacks")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    skip = set(s for s in a.skip.split(",") if s)
    budgets = [int(b) for b in a.budgets.split(",")]
    model = rl.models.load("mnist-cnn")
    lines = [f"Command: `python benchmarks/blackbox.py {' '.join(argv if argv is not None else sys.argv[1:])}`  ",
             f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"{a.threads} thread(s), CPU shared with other jobs (timings are indicative only)", ""]

    if "square" not in skip:
        x, y = rl.data.load("mnist", n=a.n)
        with torch.no_grad():
            cc = model(x).argmax(1) == y
        x, y = x[cc], y[cc]
        rows = [("robustlab Square", square_ours(model, x, y, a.square_queries, a.seed))]
        if "torchattacks" not in skip:
            rows.append(("torchattacks Square", square_torchattacks(model, x, y, a.square_queries, a.seed)))
        lines += [f"### Square, Linf eps 0.3, {a.square_queries} queries, first {a.n} test points "
                  f"({int(cc.sum())} clean-correct)", "",
                  "| attack | success | median queries (broken) | mean queries (broken) | max queries | seconds |",
                  "|---|---|---|---|---|---|"]
        for name, (ok, q, secs) in rows:
            lines.append(f"| {name} | {100 * ok.float().mean():.1f}% | {median(q[ok]):.0f} | "
                         f"{float(q[ok].float().mean()):.1f} | {int(q.max())} | {secs:.0f} |")
        lines.append("")

    if "hsj" not in skip:
        x, y = rl.data.load("mnist", n=a.hsj_n)
        with torch.no_grad():
            cc = model(x).argmax(1) == y
        x, y = x[cc], y[cc]
        table = []
        for init in ("batch", "noise"):
            if init == "noise" and "hsj-noise" in skip:
                continue
            ds, secs = [], 0.0
            for b in budgets:
                d, s = hsj_ours(model, x, y, b, a.seed, init)
                ds.append(d)
                secs += s
            table.append((f"robustlab HopSkipJump (init={init}; one run per budget)", ds, secs))
        if "foolbox" not in skip:
            snap, secs = hsj_foolbox(model, x, y, budgets, a.seed)
            table.append(("foolbox HopSkipJumpAttack (one run, best queried point)", [snap[b] for b in budgets], secs))
        lines += [f"### HopSkipJump L2 (minimum norm), first {a.hsj_n} test points ({int(cc.sum())} clean-correct): "
                  "median L2 after k queries per point", "",
                  "| attack | " + " | ".join(f"{b // 1000}k" if b % 1000 == 0 else str(b) for b in budgets) +
                  " | seconds (all budgets) |",
                  "|---|" + "---|" * len(budgets) + "---|"]
        for name, ds, secs in table:
            lines.append(f"| {name} | " + " | ".join(fmt(median(d)) for d in ds) + f" | {secs:.0f} |")
        lines.append("")

    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return text


if __name__ == "__main__":
    main()
