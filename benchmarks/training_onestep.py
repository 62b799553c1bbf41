"""Screening of cheap (one- or two-gradient) adversarial-training recipes for mnist-cnn-fast.

Each candidate is trained as ``scripts/train_mnist.py`` trains its one-step models (same data
split, seeds, batch, schedule, held-out slice, monitor and run spec), with its checkpoint at
``runs/onestep-NAME.pt``; a finished candidate's checkpoint copied to
``runs/train-mnist-cnn-fast.pt`` is resumed (not retrained) by the script once the script's
config names the same recipe. The per-epoch rows (held-out clean, FGSM and PGD-10 accuracy,
monitor flags) are printed as JSON lines.

    OMP_NUM_THREADS=1 python benchmarks/training_onestep.py train ga1-rs    # kill it when it fails
    OMP_NUM_THREADS=1 python benchmarks/training_onestep.py screen runs/onestep-ga1-rs.pt

``screen`` measures a checkpoint (or a state dict) the way the per-epoch PGD-10 cannot be
fooled: clean accuracy and APGD-CE (``--steps`` iterations), then APGD-T on the points APGD-CE
left, on the last ``--n`` training images (never trained on, outside the per-epoch slice).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import robustlab as rl
from robustlab.attacks.apgd import APGD, APGDT
from robustlab.defenses.training import (
    ATTA,
    PGDAT,
    FastAT,
    GradAlign,
    GuidedAT,
    Monitor,
    Piecewise,
    train,
)
from robustlab.threats import LpBall

ROOT = Path(__file__).resolve().parents[1]
LINF03 = LpBall("linf", 0.3)
HELD_OUT = 1000
# name -> (recipe, epochs, training points (None: all 59000), lr)
CANDIDATES = {
    # FGSM from x (alpha = eps) + GradAlign
    "ga1": (GradAlign(LINF03, lam=1.0, warmup=0.25), 7, None, Piecewise(1e-3)),
    "ga0.5-short": (GradAlign(LINF03, lam=0.5, warmup=0.5), 1, 30000, Piecewise(1e-3)),
    "ga2-short": (GradAlign(LINF03, lam=2.0, warmup=0.5), 1, 30000, Piecewise(1e-3)),
    # FGSM from a uniform start (Wong et al.'s alpha 1.25 eps) + GradAlign
    "ga1-rs": (GradAlign(LINF03, lam=1.0, alpha=0.375, random_start=True, warmup=0.3), 6, None, Piecewise(1e-3)),
    "ga3-rs": (GradAlign(LINF03, lam=3.0, alpha=0.375, random_start=True, warmup=0.3), 6, None, Piecewise(1e-3)),
    "ga10-rs": (GradAlign(LINF03, lam=10.0, alpha=0.375, random_start=True, warmup=0.3), 6, None, Piecewise(1e-3)),
    # one guided step, clean CE + squared softmax distance (after GAT)
    "guided": (GuidedAT(LINF03, lam=15.0, boost=3.0, boost_at=0.5, noise=0.5, warmup=0.1), 8, None, Piecewise(1e-3)),
    # FGSM from a uniform start (alpha 1.25 eps), projected, cut at the first of 1/3, 2/3 where the
    # model errs (Kim et al. 2021's own setting, in the ball)
    "fast-checks": (FastAT(LINF03, alpha=0.375, checks=3, warmup=0.3), 10, None, Piecewise(1e-3)),
    # two PGD steps (two attack gradients a step: the cheapest multi-step recipe, for comparison)
    "pgd2": (PGDAT(LINF03, steps=2, warmup=0.2), 8, None, Piecewise(1e-3)),
    # one step a visit from the point's carried perturbation (ATTA): the recipe that held; the
    # shipped mnist-cnn-fast is this recipe over 15 epochs
    "atta": (ATTA(LINF03, steps=1, step_size=0.1, warmup=0.2), 20, None, Piecewise(1e-3)),
}


def screen(model: torch.nn.Module, n: int, steps: int) -> dict[str, float]:
    """Clean, after-APGD-CE and after-APGD-T accuracy on the last ``n`` training images."""
    x, y = rl.data.load("mnist", "train")
    xs, ys = x[-n:], y[-n:]
    model.eval()
    with torch.no_grad():
        ok = model(xs).argmax(1) == ys
    ok_ce = ok & ~APGD(LINF03, loss="ce", steps=steps)(model, xs, ys).success
    ok_t = ok_ce.clone()
    idx = ok_ce.nonzero().flatten()
    if len(idx):
        ok_t[idx] = ~APGDT(LINF03, steps=steps)(model, xs[idx], ys[idx]).success
    return {"n": n, "clean": float(ok.float().mean()), "apgd_ce": float(ok_ce.float().mean()),
            "apgd_t": float(ok_t.float().mean())}


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("name", choices=sorted(CANDIDATES))
    s = sub.add_parser("screen")
    s.add_argument("path", type=Path, help="a training checkpoint or a state dict of mnist_cnn")
    s.add_argument("--n", type=int, default=200)
    s.add_argument("--steps", type=int, default=100, help="APGD iterations (AutoAttack: 100)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.cmd == "screen":
        state = torch.load(args.path, weights_only=True)
        model = rl.models.mnist_cnn()
        model.load_state_dict(state.get("model", state))
        c = time.process_time()
        res = screen(model, args.n, args.steps)
        res.update(epoch=state.get("epoch"), step=state.get("step"), cpu_s=round(time.process_time() - c, 1))
        print(json.dumps(res))
        return
    recipe, epochs, n, lr = CANDIDATES[args.name]
    torch.manual_seed(0)
    model = rl.models.mnist_cnn()
    x, y = rl.data.load("mnist", "train")
    xtr, ytr, xval, yval = x[:-HELD_OUT], y[:-HELD_OUT], x[-HELD_OUT:], y[-HELD_OUT:]
    if n is not None:
        xtr, ytr = xtr[:n], ytr[:n]
    res = train(model, (xtr, ytr), recipe, epochs=epochs, batch_size=100, lr=lr, seed=0,
                checkpoint=ROOT / "runs" / f"onestep-{args.name}.pt", checkpoint_every=100,
                val=(xval[:500], yval[:500]), eval_threat=LINF03, name="mnist_cnn",
                on_epoch=lambda st, fl: print(json.dumps(st.as_dict()), [f.message for f in fl], flush=True),
                monitor=Monitor(stop=("catastrophic_overfitting",), rollback=True))
    print(json.dumps({"name": args.name, "recipe": recipe.spec(), "train_cpu_s": round(res.cpu_seconds),
                      "stopped": res.stopped, "flags": len(res.flags)}))


if __name__ == "__main__":
    main()
