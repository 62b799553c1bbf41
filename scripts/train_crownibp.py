"""Train mnist-cnn-crownibp: CROWN-IBP / IBP certified training in robustlab's shared loop.

    PYTHONPATH=src nice -n 5 python scripts/train_crownibp.py --out /work/runs_bounds/crownibp_bn

Runs ``robustlab.defenses.training.train`` with the ``CROWNIBP`` recipe on the MNIST training set
minus a held-out slice (the last ``--val`` points), Adam with a piecewise learning rate. The
default recipe follows Shi et al. (2021), "Fast certified robust training with short warmup":
a BatchNorm CNN (``mnist_cnn_bn``) with IBP initialisation, one clean epoch, a short eps ramp
to the training eps 0.4, kappa 1 -> 0; beta (the CROWN-IBP share of the margin bound) 1 -> 0 by
``--beta-end`` (a CROWN-IBP step costs about 10x an IBP step on this CPU, so the default ends
it with the warmup: pure IBP, which Shi et al. find as good with their initialisation).

Under ``torchrun --nproc_per_node P`` the loop trains data-parallel (gloo, each process a 1/P of
every batch; rank 0 measures and writes). Resumable: the loop checkpoints to OUT/ckpt.pt after every epoch. After every epoch this script
also measures, on the held-out slice, clean accuracy and IBP-certified accuracy at ``--eps-test``,
saves the epoch's weights to OUT/epoch_K.safetensors, and keeps the best one (by IBP-certified
accuracy) as OUT/model.safetensors; OUT/train.json holds the recipe, seed, times and the log.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file

from robustlab.certify import IBP
from robustlab.data import load
from robustlab.defenses.certified_training import CROWNIBP
from robustlab.defenses.training.loop import Piecewise, train
from robustlab.models.certified import ARCHITECTURES, ibp_init
from robustlab.threats import LpBall


def held_out_figures(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict[str, float]:
    """Clean and IBP-certified accuracy of ``model`` on (x, y) at Linf ``eps`` (fractions)."""
    model.eval()
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    cert = IBP(batch_size=1000)(model, x, y, LpBall("linf", eps))
    return {"val_clean": clean, "val_ibp_cert": float(cert.certified.float().mean())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/runs_bounds/crownibp_bn")
    ap.add_argument("--arch", default="mnist_cnn_bn", choices=sorted(ARCHITECTURES))
    ap.add_argument("--ibp-init", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--milestones", type=float, nargs="*", default=[0.7, 0.85])
    ap.add_argument("--lr-factor", type=float, default=0.2)
    ap.add_argument("--eps", type=float, default=0.4)
    ap.add_argument("--eps-test", type=float, default=0.3)
    ap.add_argument("--warmup", type=float, default=1 / 24, help="fraction of training with eps 0")
    ap.add_argument("--ramp-end", type=float, default=9 / 24)
    ap.add_argument("--kappa-start", type=float, default=1.0)
    ap.add_argument("--kappa-end", type=float, default=0.0)
    ap.add_argument("--beta-end", type=float, default=None, help="default: the end of the warmup (pure IBP)")
    ap.add_argument("--val", type=int, default=2000, help="training points held out for model selection")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="start from these weights (a second stage; no IBP init)")
    ap.add_argument("--limit", type=int, default=None, help="train on the first LIMIT points only (smoke runs)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))  # under torchrun: data-parallel over processes (gloo)
    if world > 1:
        torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank() if world > 1 else 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    beta_end = args.warmup if args.beta_end is None else args.beta_end
    recipe = CROWNIBP(eps=args.eps, warmup=args.warmup, ramp_end=args.ramp_end, kappa_start=args.kappa_start,
                      kappa_end=args.kappa_end, beta_end=beta_end)
    torch.manual_seed(args.seed)
    model = ARCHITECTURES[args.arch]()
    if args.init:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(args.init))
    elif args.ibp_init:
        ibp_init(model, torch.Generator().manual_seed(args.seed))
    x, y = load("mnist", "train")
    xt, yt, xv, yv = x[:-args.val], y[:-args.val], x[-args.val:], y[-args.val:]
    if args.limit:
        xt, yt = xt[:args.limit], yt[:args.limit]
    log_path = out / "epochs.json"
    log: list[dict] = json.loads(log_path.read_text()) if log_path.is_file() else []
    cpu0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime

    def on_epoch(stats: object, flags: list) -> None:
        row = {**stats.as_dict(), **recipe.schedule(min(1.0, stats.epoch / args.epochs)),  # type: ignore[attr-defined]
               **held_out_figures(model, xv, yv, args.eps_test),
               "cpu_seconds": resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu0}
        model.train()
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(out / f"epoch_{stats.epoch}.safetensors"))  # type: ignore[attr-defined]
        log[:] = [r for r in log if r["epoch"] < row["epoch"]] + [row]
        log_path.write_text(json.dumps(log, indent=1))
        print(json.dumps(row), flush=True)

    t0 = time.time()
    lr = Piecewise(lr=args.lr, milestones=tuple(args.milestones), factor=args.lr_factor)
    result = train(model, (xt, yt), recipe, epochs=args.epochs, batch_size=args.batch_size, lr=lr,
                   optimizer="adam", seed=args.seed, checkpoint=out / "ckpt.pt", on_epoch=on_epoch,
                   name=args.arch)
    if world > 1:
        torch.distributed.destroy_process_group()
    if rank != 0:
        return
    best = max(log, key=lambda r: (r["val_ibp_cert"], r["epoch"]))
    (out / "model.safetensors").write_bytes((out / f"epoch_{best['epoch']}.safetensors").read_bytes())
    (out / "train.json").write_text(json.dumps({
        "recipe": {"name": "CROWNIBP", **asdict(recipe)}, "architecture": args.arch, "ibp_init": args.ibp_init and not args.init,
        "init": args.init,
        "seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "Adam",
        "processes": world, "cpu_seconds_note": "process CPU time of rank 0 only",
        "lr": lr.spec(), "held_out": f"last {args.val} training points", "best_epoch": best["epoch"],
        "train_seconds": round(result.seconds), "cpu_seconds_this_call": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu0),
        "wall_seconds_this_call": round(time.time() - t0), "argv": sys.argv[1:], "log": log}, indent=1))
    print(f"best epoch {best['epoch']}: {best}", flush=True)


if __name__ == "__main__":
    main()
