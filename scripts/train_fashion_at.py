"""Train the shipped adversarially trained Fashion-MNIST model, reproducibly from a seed.

    python scripts/train_fashion_at.py [--threads 1] [--epochs 3]

PGD adversarial training (Madry et al. 2018) at Linf 0.1 on Fashion-MNIST (Debian's
``dataset-fashion-mnist``, read by ``robustlab.data.fashion_mnist``), architecture ``mnist_cnn``.
A deliberately short recipe (few epochs, PGD-5) so it trains in well under an hour on one CPU
core: it is a benchmark model for evaluations (less saturated than MNIST), not a state-of-the-art
defense. Writes src/robustlab/models/weights/fashion-cnn-at.safetensors and .json (the card);
an interrupted run resumes from runs/train-fashion-cnn-at.pt.
"""
from __future__ import annotations

import argparse
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

import robustlab as rl
from robustlab.defenses.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
NAME = "fashion-cnn-at"
CONFIG = TrainConfig(epochs=3, eps=0.1, eps_ramp_epochs=1.0, pgd_steps=5, seed=0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = replace(CONFIG, epochs=args.epochs) if args.epochs else CONFIG
    torch.manual_seed(cfg.seed)
    model = rl.models.mnist_cnn()
    x, y = rl.data.load("fashion-mnist", "train")
    (ROOT / "runs").mkdir(exist_ok=True)
    t0, c0 = time.time(), time.process_time()
    train(model, x, y, cfg, checkpoint=ROOT / "runs" / f"train-{NAME}.pt")
    train_s, train_cpu = time.time() - t0, time.process_time() - c0

    xt, yt = rl.data.load("fashion-mnist", "test")
    with torch.no_grad():
        pred = torch.cat([model(xt[i:i + 1000]).argmax(1) for i in range(0, 10000, 1000)])
    clean = float((pred == yt).float().mean())
    threat = rl.LpBall("linf", cfg.eps)
    pgd = rl.attacks.PGD(threat, steps=40, restarts=1, seed=0)
    robust = 1.0 - float(pgd(model, xt[:1000], yt[:1000]).success.float().mean())
    card = {
        "name": NAME,
        "architecture": "mnist_cnn",
        "dataset": "fashion-mnist (60k train / 10k test; Debian dataset-fashion-mnist)",
        "training": asdict(cfg),
        "script": "scripts/train_fashion_at.py",
        "train_seconds": round(train_s),
        # Process CPU time of this invocation (a resumed run counts only the epochs it ran).
        "train_cpu_seconds": round(train_cpu),
        "threads": args.threads,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "clean_accuracy_test_10k": round(clean, 4),
        "pgd40_linf0.1_robust_accuracy_first1000": round(robust, 4),
    }
    out = ROOT / "src" / "robustlab" / "models" / "weights" / f"{NAME}.safetensors"
    rl.models.save(model, out, card)
    print(card)


if __name__ == "__main__":
    main()
