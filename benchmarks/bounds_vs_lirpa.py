"""Our IBP / CROWN / alpha-CROWN bounds side by side with auto_LiRPA's: same nets, same points.

    /work/venvs/bounds/bin/python benchmarks/bounds_vs_lirpa.py --n 20 --out benchmarks/results/bounds_vs_lirpa.json

(auto_LiRPA installed from its upstream source with --no-deps into a benchmark-only venv; see
docs/bounds.md.) For each net: the margin bounds (spec rows e_y - e_j) of the first N MNIST test
points over the Linf ball cut to [0, 1]; the largest relative difference of the bounds,
|ours - theirs| / max(1, |theirs|) elementwise, and the time of each library (best of
--repeat, interleaved, after one warm-up call; one thread) as process CPU time (the machine is
shared, wall time is noisy; wall time is kept too). alpha-CROWN: both sides 20 steps, lr 0.1;
ours keeps intermediate bounds no looser than IBP's (``intersect_ibp``), which is what
auto_LiRPA's alpha-CROWN does (its bounds match ours then); we report the mean bound gap
relative to auto_LiRPA's bound interval.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm

import robustlab as rl
from robustlab.certify import Residual, bounds, margin_spec
from robustlab.models.layers import Normalize


def residual_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        Normalize((0.1307,), (0.3081,)), nn.Conv2d(1, 8, 4, stride=2, padding=1), nn.ReLU(),
        Residual(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                               nn.Conv2d(8, 8, 3, padding=1))),
        nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))
    bn = net[3].body[1]
    bn.running_mean.uniform_(-0.3, 0.3)
    bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                         nn.Linear(100, 10)).eval()


def nets(crownibp_path: str | None, only: str | None) -> list[tuple[str, nn.Module, float]]:
    def want(name: str) -> bool:
        return not only or any(s in name for s in only.split(","))
    out = [(n, f(), e) for n, f, e in (("mlp-random", mlp, 0.02), ("residual-random", residual_net, 0.02),
                                       ("mnist-cnn (0.84M, standard)", lambda: rl.models.load("mnist-cnn"), 0.02))
           if want(n)]
    if not want("mnist-cnn-crownibp"):
        return out
    if crownibp_path:
        from safetensors.torch import load_file

        from robustlab.models.certified import mnist_cnn_bn
        m = mnist_cnn_bn()
        m.load_state_dict(load_file(crownibp_path))
        out.append(("mnist-cnn-crownibp", m.eval(), 0.3))
    elif "mnist-cnn-crownibp" in rl.models.names():
        out.append(("mnist-cnn-crownibp", rl.models.load("mnist-cnn-crownibp"), 0.3))
    return out


def lirpa_bounds(lirpa: BoundedModule, bx: BoundedTensor, method: str, spec: torch.Tensor):
    with torch.no_grad() if method != "alpha-CROWN" else torch.enable_grad():
        return lirpa.compute_bounds(x=(bx,), method=method, C=spec)


def our_bounds(net: nn.Module, x: torch.Tensor, ball: rl.LpBall, method: str, spec: torch.Tensor, steps: int):
    with torch.no_grad():
        return bounds(net, x, ball, method, spec, alpha_steps=steps, intersect_ibp=method == "alpha-crown")


def timed(fn, repeat: int):
    """(value, best process CPU seconds, best wall seconds) over ``repeat`` calls."""
    best, wall, val = float("inf"), float("inf"), None
    for _ in range(repeat):
        t0, w0 = time.process_time(), time.perf_counter()
        val = fn()
        best, wall = min(best, time.process_time() - t0), min(wall, time.perf_counter() - w0)
    return val, best, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--alpha-steps", type=int, default=20)
    ap.add_argument("--crownibp", default=None, help="weights file if the model is not shipped yet")
    ap.add_argument("--out", default="benchmarks/results/bounds_vs_lirpa.json")
    ap.add_argument("--nets", default=None, help="comma-separated substrings of net names to run")
    ap.add_argument("--methods", default="ibp,crown,alpha-crown")
    ap.add_argument("--lirpa-conv-mode", default=None, help="auto_LiRPA bound_opts conv_mode ('matrix')")
    args = ap.parse_args()
    torch.set_num_threads(1)
    x, y = rl.data.load("mnist", "test", n=args.n)
    rows = []
    for name, net, eps in nets(args.crownibp, args.nets):
        if args.nets and not any(s in name for s in args.nets.split(",")):
            continue
        spec = margin_spec(y, 10)
        opts = {"conv_mode": args.lirpa_conv_mode} if args.lirpa_conv_mode else None
        lirpa = BoundedModule(net, torch.empty_like(x), device="cpu", verbose=0, bound_opts=opts)
        ptb = PerturbationLpNorm(norm=np.inf, eps=eps, x_L=(x - eps).clamp(0, 1), x_U=(x + eps).clamp(0, 1))
        bx = BoundedTensor(x, ptb)
        ball = rl.LpBall("linf", eps)
        for method, theirs_name in (("ibp", "IBP"), ("crown", "CROWN"), ("alpha-crown", "alpha-CROWN")):
            if method not in args.methods.split(","):
                continue
            if method == "alpha-crown":
                lirpa.set_bound_opts({"optimize_bound_args": {"iteration": args.alpha_steps, "lr_alpha": 0.1}})

            theirs = partial(lirpa_bounds, lirpa, bx, theirs_name, spec)
            ours = partial(our_bounds, net, x, ball, method, spec, args.alpha_steps)
            reps = 1 if method == "alpha-crown" else args.repeat
            ours()  # warm-up
            try:
                theirs()
            except Exception as e:  # noqa: BLE001 - a peer failure is a result to record
                rows.append({"net": name, "eps": eps, "method": method, "lirpa_error": f"{type(e).__name__}: {e}"})
                print(json.dumps(rows[-1]), flush=True)
                continue
            (tl, tu), t_theirs, w_theirs = timed(theirs, reps)
            (ol, ou), t_ours, w_ours = timed(ours, reps)
            tl, tu = tl.detach(), tu.detach()
            rel = max(float(((ol - tl).abs() / tl.abs().clamp_min(1)).max()),
                      float(((ou - tu).abs() / tu.abs().clamp_min(1)).max()))
            width_gap = float(((ou - ol) - (tu - tl)).mean() / (tu - tl).mean())
            per_sample = None
            if method == "crown" and rel > 1e-5:
                # auto_LiRPA picks the neurons to refine over the whole batch (their union), so its
                # bounds of one point depend on the others; bounding each point alone removes that.
                per_sample = 0.0
                for i in range(min(len(x), 5)):
                    xi, ei = x[i:i + 1], spec[i:i + 1]
                    pi = PerturbationLpNorm(norm=np.inf, eps=eps, x_L=(xi - eps).clamp(0, 1), x_U=(xi + eps).clamp(0, 1))
                    with torch.no_grad():
                        li, ui = BoundedModule(net, torch.empty_like(xi), device="cpu", verbose=0).compute_bounds(
                            x=(BoundedTensor(xi, pi),), method="CROWN", C=ei)
                    per_sample = max(per_sample, float(((ol[i] - li[0]).abs() / li[0].abs().clamp_min(1)).max()),
                                     float(((ou[i] - ui[0]).abs() / ui[0].abs().clamp_min(1)).max()))
            row = {"net": name, "eps": eps, "method": method, "max_rel_diff_lirpa_one_point_at_a_time": per_sample, "lirpa_conv_mode": args.lirpa_conv_mode or "default",
                   "max_rel_diff": rel,
                   "interval_width_vs_lirpa": width_gap, "ours_s": t_ours, "lirpa_s": t_theirs,
                   "time_ratio": t_ours / t_theirs, "clock": "process CPU", "ours_wall_s": w_ours,
                   "lirpa_wall_s": w_theirs, "ours_mean_lower": float(ol.mean()),
                   "lirpa_mean_lower": float(tl.mean())}
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"n": args.n, "argv": sys.argv[1:], "torch": torch.__version__, "threads": 1,
                                          "platform": platform.platform(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
