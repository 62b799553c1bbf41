"""Train the shipped MNIST models, reproducibly from a seed, and write weights + model card.

    python scripts/train_mnist.py mnist-cnn          # standard training
    python scripts/train_mnist.py mnist-cnn-at       # PGD-10 adversarial training at Linf 0.3
    python scripts/train_mnist.py mnist-cnn-trades   # TRADES fine-tuning of mnist-cnn-at (beta 6)
    python scripts/train_mnist.py mnist-cnn-fast     # one-step ATTA (perturbations carried across epochs)
    python scripts/train_mnist.py mnist-cnn-masked   # one-step N-FGSM + checks: the gradient-masking example

Writes src/robustlab/models/weights/NAME.safetensors and NAME.json. An interrupted run resumes
from runs/train-NAME.pt (checkpoints every 100 steps and every epoch). The last 1000 training
images are held out for the per-epoch figures (clean, FGSM and PGD-10 accuracy).
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

import robustlab as rl
from robustlab.defenses.training import ATTA, NFGSM, PGDAT, TRADES, Monitor, Piecewise, Standard, train
from robustlab.threats import LpBall

ROOT = Path(__file__).resolve().parents[1]
LINF03 = LpBall("linf", 0.3)
# name -> (recipe, epochs, lr schedule, seed, shipped model to start from or None)
# mnist-cnn-trades starts from mnist-cnn-at: TRADES from scratch (10 epochs of 12 passes a step)
# ran at 100 steps per 3 minutes wall on the shared machine (about 17 minutes an epoch), which
# did not fit the session; two epochs of TRADES from the PGD-AT weights did.
EPOCHS_FAST = 15
CONFIGS = {
    "mnist-cnn": (Standard(), 4, Piecewise(1e-3), 1, None),
    "mnist-cnn-at": (PGDAT(LINF03, steps=10, warmup=2 / 12), 12, Piecewise(1e-3), 0, None),
    "mnist-cnn-trades": (TRADES(LINF03, beta=6.0, steps=10), 2, Piecewise(3e-4), 0, "mnist-cnn-at"),
    "mnist-cnn-fast": (ATTA(LINF03, steps=1, step_size=0.1, warmup=0.2), EPOCHS_FAST, Piecewise(1e-3), 0, None),
    "mnist-cnn-masked": (NFGSM(LINF03, k=2.0, warmup=0.3, checks=3), 8, Piecewise(1e-3), 0, None),
}
# mnist-cnn-fast: ATTA (Zheng et al. 2020): every training point keeps its adversarial perturbation
# and the next epoch's single attack step starts from it, so the attack the model meets grows by
# one step per epoch at the cost of one attack gradient a step. It replaced the run below.
# mnist-cnn-masked (shipped as mnist-cnn-fast until 28 Nov): FGSM with a random start (FastAT) at eps 0.3 masked gradients on this network in
# every setting the previous session tried (Wong et al.'s alpha 0.375 with a cyclic lr; alpha 0.3
# or 0.25 with eps ramps of one to three epochs: held-out FGSM accuracy 78-98%, PGD-10 1-7%; see
# docs/train.md). N-FGSM (noise of 2 eps, one step of eps, no clipping to the ball; de Jorge et
# al. 2022) with the eps ramped over the first 30% of training does not. The run stops at a
# catastrophic-overfitting flag and rolls back to its best epoch (early stopping, Rice et al.).
# The checks on the step removed the collapse but the result masks gradients (standard ensemble
# 2.7%; the same weights ship as mnist-cnn-masked). GradAlign, GuidedAT, FastAT with checks and
# PGD-2 were screened as replacements on 28 Nov; none reached the goal (at most 41.5% under APGD):
# benchmarks/training_onestep.py, docs/train.md "One-step training at MNIST eps 0.3".
MONITORS = {name: Monitor(stop=("catastrophic_overfitting",), rollback=True) for name in ("mnist-cnn-fast", "mnist-cnn-masked")}
HELD_OUT = 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name", choices=sorted(CONFIGS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-n", type=int, default=1000, help="test points for the PGD-40x5 figure")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe, epochs, lr, seed, init = CONFIGS[args.name]
    torch.manual_seed(seed)
    model = rl.models.mnist_cnn() if init is None else rl.models.load(init)
    x, y = rl.data.load("mnist", "train")
    xtr, ytr, xval, yval = x[:-HELD_OUT], y[:-HELD_OUT], x[-HELD_OUT:], y[-HELD_OUT:]
    (ROOT / "runs").mkdir(exist_ok=True)

    def on_epoch(s, flags):
        print(json.dumps(s.as_dict()), [f.message for f in flags], flush=True)

    res = train(model, (xtr, ytr), recipe, epochs=epochs, batch_size=100, lr=lr, seed=seed,
                checkpoint=ROOT / "runs" / f"train-{args.name}.pt", checkpoint_every=100,
                val=(xval[:500], yval[:500]), eval_threat=LINF03, on_epoch=on_epoch, name="mnist_cnn",
                monitor=MONITORS.get(args.name))
    xt, yt = rl.data.load("mnist", "test")
    with torch.no_grad():
        clean = float((torch.cat([model(xt[i:i + 1000]).argmax(1) for i in range(0, 10000, 1000)]) == yt).float().mean())
    xe, ye = xt[:args.eval_n], yt[:args.eval_n]
    pgd = rl.attacks.PGD(LINF03, steps=40, restarts=5, seed=0)
    robust = 1.0 - float(pgd(model, xe, ye).success.float().mean())
    card = {
        "name": args.name,
        "architecture": "mnist_cnn",
        "dataset": f"mnist (first {60000 - HELD_OUT} train images; last {HELD_OUT} held out for per-epoch figures)",
        "recipe": recipe.spec(),
        "initialised_from": init,
        "epochs": epochs, "batch_size": 100, "lr": lr.spec(), "optimizer": "adam", "seed": seed,
        "script": "scripts/train_mnist.py " + args.name,
        "train_seconds": round(res.seconds),
        "train_cpu_seconds": round(res.cpu_seconds),
        "threads": args.threads,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "history": [h.as_dict() for h in res.history],
        "flags": [f.__dict__ for f in res.flags],
        "stopped_by_monitor": res.stopped, "best_epoch": res.best_epoch,
        "clean_accuracy_test_10k": round(clean, 4),
        f"pgd40x5_linf0.3_robust_accuracy_first{args.eval_n}": round(robust, 4),
    }
    out = ROOT / "src" / "robustlab" / "models" / "weights" / f"{args.name}.safetensors"
    rl.models.save(model, out, card)
    print(json.dumps(card, indent=1))


if __name__ == "__main__":
    main()
