"""Train the shipped certifiably robust MNIST models from a seed; write weights + model card.

    python scripts/train_certified.py mnist-cnn-smooth-0.25   # Gaussian augmentation, sigma 0.25
    python scripts/train_certified.py mnist-cnn-smooth-0.50   # Gaussian augmentation, sigma 0.50
    python scripts/train_certified.py mnist-lip               # 1-Lipschitz net, margin loss

Every model is trained by a recipe (``loss(model, x, y, generator, progress)``) in a plain loop
(Adam, learning rate x0.1 at 60% and 85% of training); an interrupted run resumes from
runs/train-NAME.pt. The card's measured figures are written by benchmarks/smoothing.py and
benchmarks/lipschitz.py (``--card``), which run the full certification protocol.
"""
from __future__ import annotations

import argparse
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

import robustlab as rl
from robustlab.defenses.noise_training import GaussianAugmentation
from robustlab.defenses.lipschitz_training import LipschitzMargin
from robustlab.models.lipschitz import mnist_lip

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Plan:
    build: Callable[[], nn.Module]
    architecture: str
    recipe: Any
    epochs: int
    lr: float
    batch_size: int
    seed: int


PLANS = {
    "mnist-cnn-smooth-0.25": Plan(rl.models.mnist_cnn, "mnist_cnn", GaussianAugmentation(0.25), 8, 1e-3, 100, 0),
    "mnist-cnn-smooth-0.50": Plan(rl.models.mnist_cnn, "mnist_cnn", GaussianAugmentation(0.50), 8, 1e-3, 100, 0),
    "mnist-lip": Plan(mnist_lip, "mnist_lip", LipschitzMargin(eps=1.8, temperature=0.25), 20, 3e-3, 256, 0),
}


def lr_at(base: float, progress: float, epochs: int) -> float:
    frac = progress / epochs
    return base * (0.1 if frac >= 0.6 else 1.0) * (0.1 if frac >= 0.85 else 1.0)


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, plan: Plan, ckpt: Path,
        xv: torch.Tensor, yv: torch.Tensor) -> None:
    """The minimal recipe loop (to be replaced by robustlab.defenses.training.train once it
    takes a recipe): shuffled batches, Adam, step schedule, checkpoint every epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=plan.lr)
    gen = torch.Generator().manual_seed(plan.seed)
    start = 0
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        start = int(state["epoch"])
        print(f"resumed from {ckpt} at epoch {start}", flush=True)
    n = x.shape[0]
    steps = math.ceil(n / plan.batch_size)
    for epoch in range(start, plan.epochs):
        t0 = time.time()
        perm = torch.randperm(n, generator=gen)
        model.train()
        total = 0.0
        for i in range(steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(plan.lr, epoch + i / steps, plan.epochs)
            idx = perm[i * plan.batch_size:(i + 1) * plan.batch_size]
            loss = plan.recipe.loss(model, x[idx], y[idx], gen, epoch + i / steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            acc = float((model(xv).argmax(1) == yv).float().mean())
        print(f"epoch {epoch + 1}/{plan.epochs}: loss {total / n:.4f}, clean acc (1k test) {acc:.4f}, "
              f"{time.time() - t0:.0f}s", flush=True)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                    "epoch": epoch + 1}, ckpt)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name", choices=sorted(PLANS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    plan = PLANS[args.name]
    if args.epochs:
        plan.epochs = args.epochs
    torch.manual_seed(plan.seed)
    model = plan.build()
    x, y = rl.data.load("mnist", "train")
    xv, yv = rl.data.load("mnist", "test", n=1000, start=9000)  # a held-out slice, not the evaluated points
    (ROOT / "runs").mkdir(exist_ok=True)
    t0 = time.time()
    fit(model, x, y, plan, ROOT / "runs" / f"train-{args.name}.pt", xv, yv)
    seconds = time.time() - t0
    xt, yt = rl.data.load("mnist", "test")
    with torch.no_grad():
        clean = float((torch.cat([model(xt[i:i + 1000]).argmax(1) for i in range(0, 10000, 1000)]) == yt).float().mean())
    card = {
        "name": args.name,
        "architecture": plan.architecture,
        "dataset": "mnist (60k train / 10k test)",
        "training": {"recipe": plan.recipe.spec(), "epochs": plan.epochs, "lr": plan.lr,
                     "optimizer": "adam, x0.1 at 60% and 85%", "batch_size": plan.batch_size,
                     "seed": plan.seed},
        "script": "scripts/train_certified.py " + args.name,
        "train_seconds_last_session": round(seconds),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "base_clean_accuracy_test_10k": round(clean, 4),
    }
    if isinstance(plan.recipe, GaussianAugmentation):
        card["smoothing"] = {"sigma": plan.recipe.sigma}
    else:
        card["lipschitz"] = float(model.lipschitz)
    out = ROOT / "src" / "robustlab" / "models" / "weights" / f"{args.name}.safetensors"
    rl.models.save(model, out, card)
    print(card, flush=True)


if __name__ == "__main__":
    main()
