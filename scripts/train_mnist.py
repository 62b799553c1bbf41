"""Train the shipped MNIST models, reproducibly from a seed, and write weights + model card.

    python scripts/train_mnist.py mnist-cnn      # standard training, ~1 min on 2 CPU cores
    python scripts/train_mnist.py mnist-cnn-at   # PGD-10 adversarial training at Linf 0.3

Writes src/robustlab/models/weights/NAME.safetensors and NAME.json. An interrupted run resumes
from runs/train-NAME.pt.
"""
from __future__ import annotations

import argparse
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

import robustlab as rl
from robustlab.defenses.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "mnist-cnn": TrainConfig(epochs=4, eps=0.0, seed=1),
    "mnist-cnn-at": TrainConfig(epochs=12, eps=0.3, eps_ramp_epochs=2.0, pgd_steps=10, seed=0),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name", choices=sorted(CONFIGS))
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = CONFIGS[args.name]
    if args.epochs:
        cfg.epochs = args.epochs
    torch.manual_seed(cfg.seed)
    model = rl.models.mnist_cnn()
    x, y = rl.data.load("mnist", "train")
    (ROOT / "runs").mkdir(exist_ok=True)
    t0 = time.time()
    train(model, x, y, cfg, checkpoint=ROOT / "runs" / f"train-{args.name}.pt")
    train_s = time.time() - t0

    xt, yt = rl.data.load("mnist", "test")
    with torch.no_grad():
        clean = float((torch.cat([model(xt[i:i + 1000]).argmax(1) for i in range(0, 10000, 1000)]) == yt).float().mean())
    x1k, y1k = xt[:1000], yt[:1000]
    threat = rl.LpBall("linf", 0.3)
    pgd = rl.attacks.PGD(threat, steps=40, restarts=5, seed=0)
    robust = 1.0 - float(pgd(model, x1k, y1k).success.float().mean())
    card = {
        "name": args.name,
        "architecture": "mnist_cnn",
        "dataset": "mnist (60k train / 10k test)",
        "training": asdict(cfg),
        "script": "scripts/train_mnist.py " + args.name,
        "train_seconds": round(train_s),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "clean_accuracy_test_10k": round(clean, 4),
        "pgd40x5_linf0.3_robust_accuracy_first1000": round(robust, 4),
    }
    out = ROOT / "src" / "robustlab" / "models" / "weights" / f"{args.name}.safetensors"
    rl.models.save(model, out, card)
    print(card)


if __name__ == "__main__":
    main()
