"""robustlab's standard ensemble vs torchattacks' AutoAttack, same model, same points.

    python benchmarks/autoattack_compare.py [--n 1000] [--threads 1] [--settings at-linf,std-l2]
        [--precision fp32,bf16] [--only ours|torchattacks|both] [--save F.json] [--theirs F.json]

Settings:
    at-linf   the shipped adversarially trained MNIST model (mnist-cnn-at), Linf eps 0.3
    std-l2    the shipped standard MNIST model (mnist-cnn), L2 eps 1.5
    fast-linf the one-step (ATTA) MNIST model (mnist-cnn-fast), Linf eps 0.3

Both sides run AutoAttack's standard version: APGD-CE, APGD-T (9 targets), FAB-T (9 targets),
Square (5000 queries), each on the points the earlier attacks left robust. torchattacks'
AutoAttack class runs its APGD, APGD-T and FAB at 10 steps by default; the reference standard
budget is 100, so this script builds torchattacks' own APGD / APGDT / FAB / Square with
steps=100 (n_queries=5000) and chains them exactly as its MultiAttack does (the next attack
only on the points still classified correctly). Seeds 0 on both sides.

Passes are counted the same way on both sides, by a wrapper around the model: every forward
pass (per sample) and every backward pass through the model's output (per sample) is counted,
including clean and verification passes. Robust accuracy is recomputed here from each side's
returned points (points outside the ball would be reported; none are expected).

Needs torchattacks (``pip install --no-deps torchattacks==3.5.1``); never imported by robustlab.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch
from torch import nn

import robustlab as rl
from robustlab.evaluation.presets import build_attacks


class CountingModel(nn.Module):
    """Counts forward passes and backward passes through the output, per sample."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forward_calls = 0
        self.backward_calls = 0
        self.eval()

    def reset(self) -> None:
        self.forward_calls = 0
        self.backward_calls = 0

    def _count_backward(self, n: int) -> None:
        self.backward_calls += n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        n = x.shape[0]
        self.forward_calls += n
        if out.requires_grad:
            out.register_hook(lambda g: self._count_backward(n))
        return out


SETTINGS = {
    "at-linf": ("mnist-cnn-at", "linf", 0.3),
    "std-l2": ("mnist-cnn", "l2", 1.5),
    "fast-linf": ("mnist-cnn-fast", "linf", 0.3),
}


def run_ours(model: CountingModel, x, y, threat, batch_size: int, precision: str = "fp32", seed: int = 0) -> dict:
    model.reset()
    t0 = time.time()
    rep = rl.evaluate(model, x, y, threat, attacks=build_attacks("standard", threat), batch_size=batch_size, seed=seed,
                      diagnostics=False,  # the gradient-masking checks are not part of AutoAttack
                      precision=precision)
    wall = time.time() - t0
    rows = [(s.name, s.robust_accuracy, s.forward_calls + s.backward_calls, s.seconds) for s in rep.attacks]
    return {"robust_acc": rep.robust_accuracy, "clean_acc": rep.clean_accuracy, "forward": model.forward_calls,
            "backward": model.backward_calls, "wall": wall, "rows": rows, "robust": rep.robust.cpu()}


def run_torchattacks(model: CountingModel, x, y, threat, batch_size: int, seed: int = 0):
    import torchattacks as ta

    norm = {"linf": "Linf", "l2": "L2"}[threat.norm]
    eps = threat.eps
    attacks = [
        ("APGD-CE", ta.APGD(model, norm=norm, eps=eps, steps=100, n_restarts=1, loss="ce", seed=seed)),
        ("APGD-T", ta.APGDT(model, norm=norm, eps=eps, steps=100, n_restarts=1, n_classes=10, seed=seed)),
        ("FAB-T", ta.FAB(model, norm=norm, eps=eps, steps=100, n_restarts=1, multi_targeted=True, n_classes=10, seed=seed)),
        ("Square", ta.Square(model, norm=norm, eps=eps, n_queries=5000, n_restarts=1, seed=seed)),
    ]
    model.reset()
    n = x.shape[0]
    t0 = time.time()
    x_adv = x.clone()
    robust = torch.ones(n, dtype=torch.bool)
    rows = []
    for name, atk in attacks:
        ta0 = time.time()
        f0, b0 = model.forward_calls, model.backward_calls
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size))
            idx = idx[robust[idx]]
            if idx.numel() == 0:
                continue
            adv = atk(x[idx], y[idx])
            with torch.no_grad():
                pred = model(adv).argmax(dim=1)  # MultiAttack's check after each attack
            broken = pred != y[idx]
            x_adv[idx[broken]] = adv[broken]
            robust[idx[broken]] = False
        rows.append((name, float(robust.float().mean()), model.forward_calls - f0 + model.backward_calls - b0,
                     time.time() - ta0))
    wall = time.time() - t0
    with torch.no_grad():
        final = model.model(x_adv).argmax(dim=1) != y
    dist = threat.distance(x_adv.detach(), x)
    if float(dist.max()) > eps + 1e-5:
        print(f"warning: torchattacks returned points up to {float(dist.max()):.4g} > eps {eps}", file=sys.stderr)
    rob = 1.0 - float(final.float().mean())
    return {"robust_acc": rob, "clean_acc": None, "forward": model.forward_calls, "backward": model.backward_calls,
            "wall": wall, "rows": rows, "robust": ~final}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="first N MNIST test points")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--settings", default="at-linf,std-l2")
    ap.add_argument("--only", choices=["ours", "torchattacks", "both"], default="both")
    ap.add_argument("--save", default=None, help="write per-point robust flags and per-attack rows to this JSON file")
    ap.add_argument("--seed", type=int, default=0, help="seed of both sides' attacks")
    ap.add_argument("--precision", default="fp32", help="comma-separated precisions robustlab runs in: fp32,bf16")
    ap.add_argument("--theirs", default=None, help="read the torchattacks side from a JSON file written by --save")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y = rl.data.load("mnist", split="test", n=args.n)
    print("# robustlab standard ensemble vs torchattacks AutoAttack (APGD/APGD-T/FAB at 100 steps, Square 5000)\n")
    print(f"command: python benchmarks/autoattack_compare.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, first {args.n} MNIST test points\n")
    for key in [s.strip() for s in args.settings.split(",") if s.strip()]:
        name, norm, eps = SETTINGS[key]
        threat = rl.LpBall(norm, eps)
        model = CountingModel(rl.models.load(name))
        print(f"## {name}, {threat}\n")
        res: dict[str, dict] = {}
        if args.only in ("ours", "both"):
            for prec in args.precision.split(","):
                res["robustlab" + ("" if prec == "fp32" else f" {prec}")] = run_ours(model, x, y, threat,
                                                                                   args.batch_size, prec, args.seed)
        if args.only in ("torchattacks", "both"):
            res["torchattacks"] = run_torchattacks(model, x, y, threat, args.batch_size, args.seed)
        if args.theirs and "torchattacks" not in res:
            # A torchattacks run saved earlier with --save (same points): robust accuracy and
            # passes compare exactly; wall time only if both ran on an equally loaded machine.
            saved = json.load(open(args.theirs))[key]["torchattacks"]
            if saved["n"] != args.n:
                raise SystemExit(f"--theirs: saved run has n={saved['n']}, not {args.n}")
            res["torchattacks"] = dict(saved, robust=torch.tensor(saved["robust"]),
                                       rows=[tuple(r) for r in saved["rows"]])
            print(f"(torchattacks figures read from {args.theirs}: its wall time is from that run)\n")
        if args.save:
            out = json.load(open(args.save)) if os.path.exists(args.save) else {}
            entry = out.setdefault(key, {})
            for impl, r in res.items():
                entry[impl] = dict(r, n=args.n, rows=[list(t) for t in r["rows"]],
                                   robust=[bool(v) for v in r["robust"].tolist()])
            with open(args.save, "w") as fh:
                json.dump(out, fh)
        print("| implementation | clean acc | robust acc | forward | backward | fwd+bwd | wall s |")
        print("|---|---|---|---|---|---|---|")
        for impl, r in res.items():
            c = "-" if r.get("clean_acc") is None else f"{r['clean_acc']:.2%}"
            fw, bw = r["forward"], r["backward"]
            print(f"| {impl} | {c} | {r['robust_acc']:.2%} | {fw:,} | {bw:,} | {fw + bw:,} | {r['wall']:.0f} |")
        print("\nper attack (robust accuracy after it, passes it spent, seconds):\n")
        print("| implementation | attack | robust acc after | fwd+bwd | s |")
        print("|---|---|---|---|---|")
        for impl, r in res.items():
            for a, acc, passes, sec in r["rows"]:
                print(f"| {impl} | {a} | {acc:.2%} | {passes:,} | {sec:.0f} |")
        theirs = res.get("torchattacks")
        if theirs is not None:
            print()
            for impl, ours in res.items():
                if impl == "torchattacks":
                    continue
                only_ours = int((ours["robust"] & ~theirs["robust"]).sum())
                only_theirs = int((theirs["robust"] & ~ours["robust"]).sum())
                d_pp = 100 * (ours["robust_acc"] - theirs["robust_acc"])
                ratio = (ours["forward"] + ours["backward"]) / max(1, theirs["forward"] + theirs["backward"])
                print(f"{impl} vs torchattacks: robust accuracy {d_pp:+.1f} pp (target <= +0.2); "
                      f"passes {ratio:.2f}x (target <= 1); wall {ours['wall'] / max(theirs['wall'], 1e-9):.2f}x "
                      f"(speed-up {theirs['wall'] / max(ours['wall'], 1e-9):.2f}); points robust only to "
                      f"{impl}: {only_ours}, only to torchattacks: {only_theirs}")
            print()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
