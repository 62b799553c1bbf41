"""robustlab's ``fast`` evaluation vs torchattacks' AutoAttack (reference budget), same points.

    python benchmarks/fast_vs_autoattack.py --model mnist-cnn-at --dataset mnist --threat linf:0.3 \
        --n 1000 --seeds 0,1,2 [--theirs 'benchmarks/results/autoattack-1000/at-linf-torchattacks-seed{seed}.json']
        [--aa] [--standard] [--audit] [--save F.json]

Per seed, in one process: ``rl.evaluate(model, x, y, threat, attacks=build_fast(threat), seed=S,
diagnostics=False)`` (the ``fast`` preset), and with ``--aa`` torchattacks' APGD-CE, APGD-T,
FAB-T at 100 steps and Square 5000 chained as its AutoAttack does (``autoattack_compare.py``'s
``run_torchattacks``). ``--theirs`` reads torchattacks runs saved earlier by
``autoattack_compare.py --save`` on the same points instead (robust accuracy and passes compare
exactly; their wall time is from that run, on a differently loaded machine, so the wall ratio is
only reported for runs made in this process). ``--standard`` adds the default
``rl.evaluate(..., attacks="standard")`` call, diagnostics included. ``--audit`` adds the
self-audit of the fast run (``checks_fast_audit.audit_fast``: standard on 5% of the points fast
left robust) and reports its cost separately.

Every model call of every side goes through one counting wrapper (``CountingModel``): forward
passes per sample and backward passes through the output per sample, clean and re-check passes
included.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics as st
import sys
import time

import torch

import robustlab as rl
from robustlab.attacks.fast import build_fast
from robustlab.evaluation.checks_fast_audit import audit_fast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from autoattack_compare import CountingModel, run_torchattacks  # noqa: E402


def run_fast(model: CountingModel, x, y, threat, seed: int, batch_size: int) -> dict:
    model.reset()
    c0 = time.process_time()
    t0 = time.time()
    rep = rl.evaluate(model, x, y, threat, attacks=build_fast(threat, seed=seed), batch_size=batch_size, seed=seed,
                      diagnostics=False)
    wall = time.time() - t0
    return {"robust_acc": rep.robust_accuracy, "clean_acc": rep.clean_accuracy, "forward": model.forward_calls,
            "backward": model.backward_calls, "wall": wall, "cpu": time.process_time() - c0, "robust": rep.robust.cpu()}


def run_standard_default(model: CountingModel, x, y, threat, seed: int, batch_size: int) -> dict:
    """The default call a user makes: attacks="standard", diagnostics on."""
    model.reset()
    c0 = time.process_time()
    t0 = time.time()
    rep = rl.evaluate(model, x, y, threat, attacks="standard", batch_size=batch_size, seed=seed)
    wall = time.time() - t0
    cpu = time.process_time() - c0
    diags = list(rep.diagnostics or [])
    diag_passes = sum(d.forward_calls + d.backward_calls for d in diags)
    diag_s = sum(d.seconds for d in diags)
    per_check = {d.name: {"status": d.status, "seconds": d.seconds, "passes": d.forward_calls + d.backward_calls}
                 for d in diags}
    return {"robust_acc": rep.robust_accuracy, "clean_acc": rep.clean_accuracy, "forward": model.forward_calls,
            "backward": model.backward_calls, "wall": wall, "cpu": cpu, "robust": rep.robust.cpu(),
            "diagnostics_passes": diag_passes, "diagnostics_seconds": diag_s, "per_check": per_check,
            "warnings": [d.name for d in diags if d.status == "warn"]}


def run_audit(model: CountingModel, x, y, threat, robust, seed: int) -> dict:
    model.reset()
    c0 = time.process_time()
    t0 = time.time()
    d = audit_fast(model, x, y, threat, robust.to(x.device), seed=seed)
    return {"status": d.status, "sampled": len(d.details["sampled"]), "broken": len(d.details["broken"]),
            "forward": model.forward_calls, "backward": model.backward_calls, "wall": time.time() - t0,
            "cpu": time.process_time() - c0}


def load_model(name: str, weights: str | None, arch: str | None = None) -> torch.nn.Module:
    """The shipped model ``name``, or its architecture (``arch``, default the zoo entry's) with
    the weights of the file ``weights`` (a model not shipped yet needs ``arch``)."""
    if weights is None:
        return rl.models.load(name)
    import hashlib

    from safetensors.torch import load_file

    from robustlab.models.architectures import BUILDERS
    from robustlab.models.zoo import ZOO

    if arch is None and name not in ZOO:
        raise SystemExit(f"--arch: {name!r} is not in the zoo; name its architecture (e.g. mnist_cnn)")
    model = BUILDERS[arch or ZOO[name].architecture]()
    model.load_state_dict(load_file(weights), strict=True)
    print(f"weights: {weights} sha256 {hashlib.sha256(open(weights, 'rb').read()).hexdigest()}")
    return model.eval()


def load_theirs(pattern: str, seed: int, n: int) -> dict:
    """A saved torchattacks run: from ``autoattack_compare.py --save`` or from this script's own
    ``--save`` (then the run of ``seed`` if saved, else its first torchattacks run)."""
    path = pattern.format(seed=seed)
    data = json.load(open(path))
    if "runs" in data:  # this script's own file
        if data["n"] != n:
            raise SystemExit(f"--theirs: {path} has n={data['n']}, not {n}")
        runs = data["runs"]
        for s in [str(seed)] + list(runs):
            if s in runs and "torchattacks" in runs[s]:
                r = runs[s]["torchattacks"]
                return dict(r, robust=torch.tensor(r["robust"]), saved=path, aa_seed=r.get("aa_seed", int(s)))
        raise SystemExit(f"--theirs: no torchattacks run in {path}")
    for setting in data.values():
        if "torchattacks" in setting:
            r = setting["torchattacks"]
            if r["n"] != n:
                raise SystemExit(f"--theirs: {path} has n={r['n']}, not {n}")
            return dict(r, robust=torch.tensor(r["robust"]), saved=path)
    raise SystemExit(f"--theirs: no torchattacks run in {path}")


def _join(parts: list[dict[str, dict]]) -> dict[str, dict]:
    """One seed's results on disjoint chunks of points, as if run on their union."""
    out: dict[str, dict] = {}
    for key in parts[0]:
        vs = [p[key] for p in parts if key in p]
        if len(vs) < len(parts):
            continue  # a side that not every chunk ran
        j = dict(vs[0])
        for f in ("forward", "backward", "wall", "cpu", "sampled", "broken"):
            if all(isinstance(v.get(f), (int, float)) for v in vs):
                j[f] = sum(v[f] for v in vs)
        if "robust" in j:
            j["robust"] = torch.cat([v["robust"].bool() for v in vs])
            j["robust_acc"] = float(j["robust"].float().mean())
        if key == "audit":
            j["status"] = "warn" if any(v["status"] == "warn" for v in vs) else "pass"
        out[key] = j
    return out


def _passes(r: dict) -> int:
    return int(r["forward"] + r["backward"])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mnist-cnn-at")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--threat", default="linf:0.3")
    ap.add_argument("--n", type=int, default=1000, help="N test points from --start")
    ap.add_argument("--start", type=int, default=0, help="first test point (chunks of a larger set)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--aa", action="store_true", help="run torchattacks' AutoAttack in this process")
    ap.add_argument("--aa-once", action="store_true",
                    help="run AutoAttack once (the first seed) and compare every fast seed with that run")
    ap.add_argument("--theirs", default=None, help="saved torchattacks runs, '{seed}' in the path")
    ap.add_argument("--standard", action="store_true", help="also the default evaluate(attacks='standard')")
    ap.add_argument("--audit", action="store_true", help="also the self-audit of each fast run")
    ap.add_argument("--weights", default=None,
                    help="safetensors file to load into --model's architecture instead of the shipped weights "
                         "(a model being retrained elsewhere); its sha256 is printed")
    ap.add_argument("--arch", default=None, help="architecture for --weights (default: the zoo entry's)")
    ap.add_argument("--save", default=None, help="write everything (per-point flags included) to this JSON")
    ap.add_argument("--report", nargs="+", default=None,
                    help="only print the tables from JSON files written by --save (e.g. one per seed)")
    args = ap.parse_args(argv)
    if args.report:
        # Files of the same seed on disjoint chunks (--start) are joined: per-point flags
        # concatenated, passes, wall and CPU seconds summed, robust accuracy over all points.
        chunks: dict[int, list[dict]] = {}
        spans: dict[int, set[int]] = {}
        covered: list[tuple[int, int]] = []
        for path in args.report:
            saved = json.load(open(path))
            print(f"from {path}: {saved['command']}")
            start, n = saved.get("start", 0), saved["n"]
            covered.append((start, n))
            for s, r in saved["runs"].items():
                seen = spans.setdefault(int(s), set())
                if seen & set(range(start, start + n)):
                    raise SystemExit(f"--report: seed {s} has two runs on the same points ({path})")
                seen |= set(range(start, start + n))
                chunks.setdefault(int(s), []).append(
                    {k: dict(v, robust=torch.tensor(v["robust"])) if "robust" in v else v for k, v in r.items()})
        runs = {s: _join(parts) for s, parts in sorted(chunks.items())}
        pts = sorted(set(covered))
        print(f"points: {', '.join(f'{a}..{a + n - 1}' for a, n in pts)} ({sum(n for _, n in pts)} in all)")
        report(runs, None)
        return
    torch.set_num_threads(args.threads)
    threat = rl.parse_threat(args.threat) if hasattr(rl, "parse_threat") else rl.LpBall.parse(args.threat)
    x, y = rl.data.load(args.dataset, split="test", n=args.n, start=args.start)
    model = CountingModel(load_model(args.model, args.weights, args.arch))
    seeds = [int(s) for s in args.seeds.split(",")]
    cmd = "python benchmarks/fast_vs_autoattack.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"# fast vs AutoAttack: {args.model}, {threat}, {args.dataset} test points {args.start}.."
          f"{args.start + args.n - 1}\n")
    print(f"command: {cmd}")
    print("wall s is elapsed time; cpu s is this process's CPU time (1 thread), the fairer figure on a "
          "machine shared with other jobs")
    print(f"machine: {platform.platform()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} at start (shared machine)\n", flush=True)
    runs: dict[int, dict[str, dict]] = {}
    for seed in seeds:
        res: dict[str, dict] = {}
        res["fast"] = run_fast(model, x, y, threat, seed, args.batch_size)
        print(f"seed {seed}: fast {res['fast']['robust_acc']:.2%} {_passes(res['fast']):,} passes "
              f"{res['fast']['wall']:.0f} s", flush=True)
        if args.audit:
            res["audit"] = run_audit(model, x, y, threat, res["fast"]["robust"], seed)
            print(f"seed {seed}: audit {res['audit']}", flush=True)
        if args.aa and args.aa_once and runs:
            first = next(iter(runs.values()))["torchattacks"]
            res["torchattacks"] = dict(first, aa_seed=first.get("aa_seed", seeds[0]))
        elif args.aa:
            c0 = time.process_time()
            res["torchattacks"] = run_torchattacks(model, x, y, threat, args.batch_size, seed)
            res["torchattacks"]["cpu"] = time.process_time() - c0
            res["torchattacks"]["aa_seed"] = seed
            print(f"seed {seed}: torchattacks {res['torchattacks']['robust_acc']:.2%} "
                  f"{_passes(res['torchattacks']):,} passes {res['torchattacks']['wall']:.0f} s", flush=True)
        elif args.theirs:
            res["torchattacks"] = load_theirs(args.theirs, seed, args.n)
        if args.standard:
            res["standard"] = run_standard_default(model, x, y, threat, seed, args.batch_size)
            print(f"seed {seed}: standard+diagnostics {res['standard']['robust_acc']:.2%} "
                  f"{_passes(res['standard']):,} passes {res['standard']['wall']:.0f} s "
                  f"cpu {res['standard']['cpu']:.0f} s; per check {res['standard']['per_check']}", flush=True)
        runs[seed] = res
        if args.save:
            out = {str(s): {k: {kk: (vv.tolist() if isinstance(vv, torch.Tensor) else vv) for kk, vv in v.items()}
                            for k, v in r.items()} for s, r in runs.items()}
            with open(args.save, "w") as fh:
                json.dump({"command": cmd, "model": args.model, "threat": str(threat), "n": args.n,
                           "start": args.start, "runs": out}, fh)
    report(runs, threat)


def report(runs: dict[int, dict[str, dict]], threat) -> None:
    print("\n| seed | AutoAttack robust acc | fast robust acc | diff | AA passes | fast passes | passes ratio "
          "| AA wall s | fast wall s | wall ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    diffs, pr, wr = [], [], []
    for seed, r in runs.items():
        f, a = r["fast"], r.get("torchattacks")
        if a is None:
            print(f"| {seed} | - | {f['robust_acc']:.2%} | - | - | {_passes(f):,} | - | - | {f['wall']:.0f} | - |")
            continue
        d = 100 * (f["robust_acc"] - a["robust_acc"])
        p = _passes(f) / max(1, _passes(a))
        same_run = "saved" not in a
        w = f["wall"] / max(a["wall"], 1e-9)
        diffs.append(d)
        pr.append(p)
        if same_run:
            wr.append(w)
        wtxt = f"{w:.3f}" if same_run else f"({w:.3f}, saved run)"
        if "cpu" in f and "cpu" in a:
            wtxt += f"; cpu {f['cpu']:.0f} s vs {a['cpu']:.0f} s = {f['cpu'] / max(a['cpu'], 1e-9):.3f}"
        scell = f"{seed}" if a.get("aa_seed", seed) == seed else f"{seed} (AA seed {a['aa_seed']})"
        print(f"| {scell} | {a['robust_acc']:.2%} | {f['robust_acc']:.2%} | {d:+.1f} pp | {_passes(a):,} | "
              f"{_passes(f):,} | {p:.3f} | {a['wall']:.0f} | {f['wall']:.0f} | {wtxt} |")
    if diffs:
        print(f"\nmean over {len(diffs)} seeds: robust accuracy {st.mean(diffs):+.2f} pp (target <= +0.1), "
              f"passes {st.mean(pr):.3f}x (target <= 0.333, goal 0.1)"
              + (f", wall {st.mean(wr):.3f}x" if wr else ", wall: no same-process AutoAttack run"))
        fast_any = torch.stack([r["fast"]["robust"].bool() for r in runs.values()]).all(0)
        aa_any = torch.stack([r["torchattacks"]["robust"].bool() for r in runs.values()
                              if "torchattacks" in r]).all(0)
        only_fast = int((torch.stack([r["fast"]["robust"].bool() for r in runs.values()]).float().mean(0) >
                         torch.stack([r["torchattacks"]["robust"].bool() for r in runs.values()
                                      if "torchattacks" in r]).float().mean(0)).sum())
        print(f"worst case per point over the seeds: AutoAttack {aa_any.float().mean():.2%}, fast "
              f"{fast_any.float().mean():.2%}; points robust to fast in more seeds than to AutoAttack: {only_fast}")
    for key, label in (("audit", "self-audit (standard on 5% of fast's robust points)"),
                       ("standard", "default evaluate(attacks='standard'), diagnostics included")):
        rows = [(s, r[key], r.get("torchattacks"), r["fast"]) for s, r in runs.items() if key in r]
        if not rows:
            continue
        print(f"\n{label}:\n")
        for s, v, a, f in rows:
            extra = ""
            if a is not None:
                extra = f", {_passes(v) / max(1, _passes(a)):.3f}x AutoAttack's passes"
                if "saved" not in a:
                    extra += f", {v['wall'] / max(a['wall'], 1e-9):.3f}x its wall time"
            if key == "audit":
                tot = (_passes(v) + _passes(f)) / max(1, _passes(a)) if a is not None else float("nan")
                print(f"- seed {s}: {v['status']}, broke {v['broken']} of {v['sampled']} sampled points, "
                      f"{_passes(v):,} passes, {v['wall']:.0f} s{extra}; fast + audit {tot:.3f}x AutoAttack's passes")
            else:
                if a is not None and "cpu" in v and "cpu" in a:
                    extra += f", {v['cpu'] / max(a['cpu'], 1e-9):.3f}x its CPU time ({v['cpu']:.0f} s vs {a['cpu']:.0f} s)"
                print(f"- seed {s}: robust acc {v['robust_acc']:.2%}, {_passes(v):,} passes "
                      f"({v['diagnostics_passes']:,} in diagnostics, {v['diagnostics_seconds']:.0f} s), "
                      f"{v['wall']:.0f} s{extra}; warnings: {v['warnings'] or 'none'}")
                for name, c in v.get("per_check", {}).items():
                    print(f"    - {name}: {c['status']}, {c['passes']:,} passes, {c['seconds']:.1f} s")


if __name__ == "__main__":
    main()
