"""Train mnist-cnn-crownibp: CROWN-IBP (Zhang et al. 2020) on the MNIST training set.

    PYTHONPATH=src nice -n 10 python scripts/train_crownibp.py --out /work/runs_bounds/crownibp

Checkpoints after every epoch (model, optimiser, generator, epoch) in OUT/ckpt.pt and resumes
from it; writes OUT/model.safetensors and OUT/train.json (recipe, seed, wall time, per-epoch log).
A minimal loop calling the recipe's ``loss``; robustlab.defenses.training.train replaces it once
the recipe-protocol loop lands on main.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from robustlab.data import load
from robustlab.defenses.certified_training import CROWNIBP
from robustlab.models.certified import mnist_cnn_small


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/runs_bounds/crownibp")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eps", type=float, default=0.4)
    ap.add_argument("--warmup", type=float, default=0.05)
    ap.add_argument("--ramp-end", type=float, default=0.5)
    ap.add_argument("--beta-end", type=float, default=0.125)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="start from these weights (a second stage)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = CROWNIBP(eps=args.eps, warmup=args.warmup, ramp_end=args.ramp_end, beta_end=args.beta_end)
    torch.manual_seed(args.seed)
    model = mnist_cnn_small()
    if args.init:
        model.load_state_dict(load_file(args.init))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    x, y = load("mnist", "train")
    n = x.shape[0]
    steps = math.ceil(n / args.batch_size)
    total = args.epochs * steps
    ckpt = out / "ckpt.pt"
    start, log, wall = 0, [], 0.0
    if ckpt.is_file():
        st = torch.load(ckpt, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        start, log, wall = st["epoch"], st["log"], st["wall"]
        print(f"resumed at epoch {start}", flush=True)
    for epoch in range(start, args.epochs):
        t0 = time.time()
        perm = torch.randperm(n, generator=gen)
        model.train()
        tot = 0.0
        for i in range(steps):
            progress = min(1.0, (epoch * steps + i) / total)
            lr = args.lr * (0.1 if progress >= 0.75 else 1.0) * (0.1 if progress >= 0.9 else 1.0)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = perm[i * args.batch_size:(i + 1) * args.batch_size]
            loss = recipe.loss(model, x[idx], y[idx], gen, progress)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
        model.eval()
        wall += time.time() - t0
        row = {"epoch": epoch + 1, "loss": tot / n, "seconds": time.time() - t0, **recipe.schedule(progress)}
        log.append(row)
        print(json.dumps(row), flush=True)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                    "epoch": epoch + 1, "log": log, "wall": wall}, ckpt)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "train.json").write_text(json.dumps({
        "recipe": {"name": "CROWNIBP", **asdict(recipe)}, "seed": args.seed, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "lr_schedule": "x0.1 at 75% and 90% of steps",
        "optimizer": "Adam", "train_seconds": round(wall), "argv": sys.argv[1:], "log": log}, indent=1))


if __name__ == "__main__":
    main()
