"""Adversarial training (Madry et al. 2018): minimise the loss on PGD points of the threat.

    train(model, x, y, TrainConfig(epochs=12, eps=0.3, pgd_steps=10), checkpoint="ckpt.pt")

Checkpoints after every epoch (model, optimizer, epoch, RNG state) so an interrupted run resumes.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.base import Counter, ModelGuard
from robustlab.attacks.gradient import run_pgd
from robustlab.threats import LpBall


@dataclass
class TrainConfig:
    """Args:
        epochs: passes over the training set.
        batch_size: points per optimiser step.
        lr: Adam learning rate; multiplied by 0.1 at 70% and again at 90% of training.
        eps: Linf radius of the adversarial examples; 0 means standard training.
        eps_ramp_epochs: eps grows linearly from 0 over this many epochs (stabilises MNIST AT).
        pgd_steps: PGD steps per batch (random start, step 2.5 * eps / steps).
        seed: seeds data order, initialisation (if the caller seeds before building) and PGD.
    """

    epochs: int = 12
    batch_size: int = 100
    lr: float = 1e-3
    eps: float = 0.3
    eps_ramp_epochs: float = 2.0
    pgd_steps: int = 10
    seed: int = 0


def _eps_at(cfg: TrainConfig, progress: float) -> float:
    if cfg.eps_ramp_epochs <= 0:
        return cfg.eps
    return cfg.eps * min(1.0, progress / cfg.eps_ramp_epochs)


def _lr_at(cfg: TrainConfig, progress: float) -> float:
    frac = progress / cfg.epochs
    return cfg.lr * (0.1 if frac >= 0.7 else 1.0) * (0.1 if frac >= 0.9 else 1.0)


def train(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    cfg: TrainConfig,
    checkpoint: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> nn.Module:
    """Train ``model`` in place on (N, C, H, W) inputs in [0, 1] and (N,) labels; return it in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    start_epoch = 0
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        start_epoch = int(state["epoch"])
        log(f"resumed from {ckpt} at epoch {start_epoch}")
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        perm = torch.randperm(n, generator=gen)
        tot_loss, tot_correct = 0.0, 0
        for i in range(steps_per_epoch):
            progress = epoch + i / steps_per_epoch
            for group in opt.param_groups:
                group["lr"] = _lr_at(cfg, progress)
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            xb, yb = x[idx], y[idx]
            eps = _eps_at(cfg, progress)
            if cfg.eps > 0 and eps > 0:
                model.eval()
                with ModelGuard(model):
                    xb, _ = run_pgd(
                        Counter(model), LpBall("linf", eps), xb, yb, None,
                        steps=cfg.pgd_steps, restarts=1, step_size=2.5 * eps / cfg.pgd_steps,
                        random_start=True, loss="ce", early_stop=False, l1_sparsity=0.95, generator=gen,
                    )
            model.train()
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_loss += float(loss.detach()) * len(idx)
            tot_correct += int((out.argmax(1) == yb).sum())
        model.eval()
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {tot_loss / n:.4f}, "
            f"{'adversarial' if cfg.eps > 0 else 'train'} acc {tot_correct / n:.4f}, {time.time() - t0:.0f}s")
        if ckpt is not None:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                        "epoch": epoch + 1, "config": asdict(cfg)}, ckpt)
    return model.eval()
