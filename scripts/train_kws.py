"""Train the keyword-spotting CNN shipped as ``kws-cnn`` (and its adversarially trained version).

    python scripts/train_kws.py                              # -> kws-cnn, standard training
    python scripts/train_kws.py --adv-db -40 --pgd-steps 1 --step-scale 1.25 --init kws-cnn \
        --epochs 10 --lr 1e-3 --ramp 2 --name kws-cnn-at --ckpt /tmp/kws-cnn-at-ft40.ckpt.pt   # fast AT fine-tune

Data: ``robustlab.data.load("keywords")`` (train split: 81 voice variants; test: 20 unseen ones).
Augmentation: speed perturbation in [0.85, 1.15], a random circular shift of up to 0.25 s, a
random gain in [0.6, 1.2] (clipped to [-1, 1]) and SpecAugment masks on the log-mel features. Adam, cosine learning rate, batch 64; the final epoch's weights are kept (the test set
is never used to choose anything). With ``--adv-db`` each batch is replaced by PGD points of
``DbBall(adv_db)`` (Madry et al. 2018; random start, ``--pgd-steps`` steps of 2.5 r / steps,
the budget ramped up linearly over the first ``--ramp`` epochs). Checkpoints every epoch to
``--ckpt`` and resumes from it. Writes ``src/robustlab/models/weights/<name>.safetensors`` and the
JSON card beside it.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import robustlab as rl
from robustlab.models.kws import kws_cnn, n_parameters
from robustlab.threats import DbBall

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "robustlab" / "models" / "weights"


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Speed perturbation (resampling by a factor in [0.85, 1.15], which shifts pitch and tempo
    together, as another voice would), a random circular shift (<= 0.25 s) and a gain in
    [0.6, 1.2] of (N, 1, T) clips in [0, 1]."""
    n, _, t = x.shape
    w = 2 * x[:, 0] - 1
    speed = 0.85 + 0.3 * torch.rand(n, generator=g)
    pos = torch.arange(t)[None, :] * speed[:, None]  # read the clip faster or slower
    lo = pos.floor().long().clamp(max=t - 1)
    frac = pos - pos.floor()
    w = torch.where(pos < t - 1, w.gather(1, lo) * (1 - frac) + w.gather(1, (lo + 1).clamp(max=t - 1)) * frac,
                    torch.zeros_like(w))
    shifts = torch.randint(-t // 4, t // 4 + 1, (n,), generator=g)
    idx = (torch.arange(t)[None, :] - shifts[:, None]) % t
    w = w.gather(1, idx)
    gain = 0.6 + 0.6 * torch.rand(n, 1, generator=g)
    return ((w * gain).clamp(-1, 1)[:, None] + 1) / 2


def spec_augment(feats: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """SpecAugment (Park et al. 2019): one band of up to 6 mel bins and one span of up to 8
    frames per clip set to the clip's mean log power. feats (N, 1, mels, frames)."""
    n, _, f, t = feats.shape
    out = feats.clone()
    mean = feats.mean(dim=(1, 2, 3))
    for i in range(n):
        fw, tw = int(torch.randint(0, 7, (1,), generator=g)), int(torch.randint(0, 9, (1,), generator=g))
        f0, t0 = int(torch.randint(0, f - fw + 1, (1,), generator=g)), int(torch.randint(0, t - tw + 1, (1,), generator=g))
        out[i, :, f0:f0 + fw] = mean[i]
        out[i, :, :, t0:t0 + tw] = mean[i]
    return out


def pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, threat: DbBall, steps: int, scale: float,
        g: torch.Generator) -> torch.Tensor:
    """Untargeted Linf PGD on cross-entropy inside ``threat`` (per-clip radius r), random start,
    steps of ``scale * r / steps``, for training (1 step with scale 1.25: Wong et al.'s fast AT)."""
    r = threat.radius(x).reshape(-1, 1, 1)
    x_adv = threat.random_start(x, g)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = threat.project(x_adv.detach() + scale * r / steps * grad.sign(), x)
    return x_adv.detach()


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float(torch.cat([model(x[i:i + 256]).argmax(1) for i in range(0, len(x), 256)]).eq(y).float().mean())


def train_adversarial(args: argparse.Namespace, xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor,
                      yte: torch.Tensor) -> None:
    """Multi-step PGD adversarial training through the core's training loop
    (``robustlab.defenses.training.train``) with ``BallPGDAT(DbBall(adv_db))``: each batch is
    augmented (speed, shift, gain), then replaced by the last iterate of ``--pgd-steps`` PGD steps
    of ``step_scale * r / steps`` from a random start in each clip's ball; every radius ramps
    linearly from 0 over the first ``--warmup`` of training. Learning rate: one cycle
    (``Cyclic``, peak ``--lr`` at 15%). Monitored on 60 training clips (clean and PGD-10 accuracy at the
    full budget); the last epoch's weights ship (the unseen-voice test split chooses nothing)."""
    from robustlab.defenses.audio import BallPGDAT
    from robustlab.defenses.training import train
    from robustlab.defenses.training.loop import Cyclic

    torch.manual_seed(args.seed)
    model = kws_cnn(width=args.width)
    if args.init:
        model.load_state_dict(rl.models.load(args.init).state_dict())
    threat = DbBall(args.adv_db)
    recipe = BallPGDAT(threat, steps=args.pgd_steps, step_scale=args.step_scale, warmup=args.warmup,
                       augment=augment)
    ckpt = Path(args.ckpt or f"/tmp/{args.name}.ckpt.pt")
    val_idx = torch.arange(0, len(xtr), 20)  # 60 training clips, every 20th: monitoring only
    t_cpu = time.process_time()
    deadline = None if args.max_minutes is None else time.time() + 60 * args.max_minutes

    class Deadline(Exception):
        pass

    monitor_log: list[dict] = []

    def on_epoch(stats, flags) -> None:  # noqa: ANN001
        # Monitoring (the loop's own val check runs FGSM, which takes only a scalar eps): clean and
        # PGD-10 (seed 0, random start) accuracy at the full budget on 60 training clips.
        from robustlab.attacks import PGD

        xv, yv = xtr[val_idx], ytr[val_idx]
        model.eval()
        clean = accuracy(model, xv, yv)
        robust = float((~PGD(threat, steps=10, seed=0)(model, xv, yv).success).float().mean())
        monitor_log.append({"epoch": stats.epoch, "loss": round(stats.loss, 4), "val_clean": round(clean, 4),
                            "val_pgd10": round(robust, 4), "seconds": round(stats.seconds, 1)})
        print(f"epoch {stats.epoch}: loss {stats.loss:.4f} val clean {clean:.3f} pgd10 {robust:.3f} "
              f"({stats.seconds:.0f} s, cpu {time.process_time() - t_cpu:.0f} s) {[f.kind for f in flags]}", flush=True)
        if deadline is not None and time.time() > deadline and stats.epoch < args.epochs:
            raise Deadline

    try:
        res = train(model, (xtr, ytr), recipe, epochs=args.epochs, batch_size=args.batch,
                    lr=Cyclic(args.lr, 0.15), optimizer="adam", weight_decay=1e-4, seed=args.seed,
                    checkpoint=ckpt,
                    on_epoch=on_epoch, name=f"kws_cnn:{args.width}")
        stopped_early = None
    except Deadline:
        # Ship what the last finished epoch left (its checkpoint also lets the same command resume).
        stopped_early = len(monitor_log)
        print(f"stopped at the wall-time limit after epoch {stopped_early}; weights written as they are; "
              f"rerun the same command to resume from {ckpt}")
        res = None
    model.eval()
    card = {
        "name": args.name, "architecture": "kws_cnn", "width": args.width, "dataset": "keywords",
        "parameters": n_parameters(model),
        "recipe": {"script": "scripts/train_kws.py", "loop": "robustlab.defenses.training.train",
                   "recipe": recipe.spec(), "epochs": args.epochs, "lr": f"cyclic, peak {args.lr} at 15%",
                   "batch": args.batch, "optimizer": "Adam (weight decay 1e-4)",
                   "augmentation": "speed 0.85-1.15, circular shift <= 0.25 s, gain 0.6-1.2",
                   "adversarial": {"threat": threat.spec(), "pgd_steps": args.pgd_steps,
                                   "step": f"{args.step_scale} * radius / steps", "random_start": True,
                                   "warmup": f"radius ramps linearly from 0 over the first {args.warmup:g} of training"},
                   "init": args.init},
        "seed": args.seed, "threads": args.threads,
        "wall_time_s": round(res.seconds, 1) if res is not None else round(sum(e["seconds"] for e in monitor_log), 1),
        "stopped_after_epoch": stopped_early,
        "cpu_time_s_this_process": round(time.process_time() - t_cpu, 1),
        "test_accuracy": round(accuracy(model, xte, yte), 4),
        "train_accuracy": round(accuracy(model, xtr, ytr), 4),
        "test_split": "480 clips, 40 per class, 20 espeak-ng voice variants never used in training",
        "log": monitor_log if res is None or len(monitor_log) == len(res.history) else [h.as_dict() for h in res.history],
    }
    rl.models.save(model, WEIGHTS / f"{args.name}.safetensors", card)
    print(json.dumps({k: card[k] for k in ("test_accuracy", "train_accuracy", "wall_time_s")}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", default="kws-cnn")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adv-db", type=float, default=None, help="adversarial training budget in dB (DbBall)")
    p.add_argument("--pgd-steps", type=int, default=7)
    p.add_argument("--step-scale", type=float, default=2.5, help="PGD step = scale * radius / steps")
    p.add_argument("--width", type=int, default=16, help="channels of the first conv block")
    p.add_argument("--ramp", type=float, default=3.0, help="epochs over which the dB budget ramps from -60 dB")
    p.add_argument("--init", default=None, help="start from a shipped model's weights (e.g. kws-cnn)")
    p.add_argument("--ckpt", default=None, help="checkpoint path (default /tmp/<name>.ckpt.pt)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=float, default=0.3,
                   help="adversarial training: fraction of training over which every radius ramps up from 0")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="adversarial training: stop after the first epoch that ends past this wall time (resumable)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    xtr, ytr = rl.data.load("keywords", split="train")
    xte, yte = rl.data.load("keywords", split="test")
    if args.adv_db is not None:
        return train_adversarial(args, xtr, ytr, xte, yte)
    model = kws_cnn(width=args.width)
    if args.init:
        model.load_state_dict(rl.models.load(args.init).state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(xtr) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps_per_epoch,
                                                pct_start=0.15)
    ckpt = Path(args.ckpt or f"/tmp/{args.name}.ckpt.pt")
    start, elapsed, log = 0, 0.0, []
    if ckpt.is_file():
        s = torch.load(ckpt, weights_only=True)
        model.load_state_dict(s["model"]), opt.load_state_dict(s["opt"]), sched.load_state_dict(s["sched"])
        g.set_state(s["gen"]), torch.set_rng_state(s["rng"])
        start, elapsed, log = s["epoch"], s["elapsed"], json.loads(s["log"])
        print(f"resumed from {ckpt} at epoch {start}")
    for epoch in range(start, args.epochs):
        t0 = time.time()
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        total = 0.0
        for i in range(0, len(xtr), args.batch):
            b = perm[i:i + args.batch]
            xb, yb = augment(xtr[b], g), ytr[b]
            if args.adv_db is not None:
                db = args.adv_db if args.ramp <= 0 else -60 + (args.adv_db + 60) * min(1.0, (epoch + i / len(xtr)) / args.ramp)
                model.eval()  # PGD against the model as deployed (BatchNorm statistics fixed)
                xb = pgd(model, xb, yb, DbBall(db), args.pgd_steps, args.step_scale, g)
                model.train()
            loss = F.cross_entropy(model[3:](spec_augment(model[:3](xb), g)), yb, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
        elapsed += time.time() - t0
        acc = accuracy(model, xte, yte)
        log.append({"epoch": epoch + 1, "loss": round(total / len(xtr), 4), "test_acc": round(acc, 4)})
        print(f"epoch {epoch + 1}: loss {total / len(xtr):.4f} test acc {acc:.4f} ({elapsed:.0f} s)", flush=True)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "gen": g.get_state(), "rng": torch.get_rng_state(), "epoch": epoch + 1, "elapsed": elapsed,
                    "log": json.dumps(log)}, ckpt)
    model.eval()
    card = {
        "name": args.name, "architecture": "kws_cnn", "width": args.width, "dataset": "keywords", "parameters": n_parameters(model),
        "recipe": {"script": "scripts/train_kws.py", "epochs": args.epochs, "lr": args.lr, "batch": args.batch,
                   "optimizer": "Adam (weight decay 1e-4), one-cycle lr", "label_smoothing": 0.05,
                   "augmentation": "speed 0.85-1.15, circular shift <= 0.25 s, gain 0.6-1.2, SpecAugment (6 mels, 8 frames)",
                   "adversarial": None if args.adv_db is None else
                   {"threat": DbBall(args.adv_db).spec(), "pgd_steps": args.pgd_steps,
                    "step": f"{args.step_scale} * radius / steps", "random_start": True, "ramp_epochs": args.ramp},
                   "init": args.init},
        "seed": args.seed, "threads": args.threads, "wall_time_s": round(elapsed, 1),
        "test_accuracy": round(accuracy(model, xte, yte), 4),
        "train_accuracy": round(accuracy(model, xtr, ytr), 4),
        "test_split": "480 clips, 40 per class, 20 espeak-ng voice variants never used in training",
        "log": log,
    }
    rl.models.save(model, WEIGHTS / f"{args.name}.safetensors", card)
    print(json.dumps({k: card[k] for k in ("test_accuracy", "train_accuracy", "wall_time_s")}))


if __name__ == "__main__":
    main()
