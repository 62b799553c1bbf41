"""One training job from command-line settings: shared by ``robustlab train`` and
``python -m robustlab.train`` (the torchrun / DDP entry).

The checkpoint lives beside the output (``OUT.ckpt``); a rerun of the same command with
``resume`` continues from it. The weights go to ``OUT`` (safetensors) with a JSON card beside
it holding the settings, the per-epoch figures, the monitor's flags and the wall time.
"""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from robustlab.defenses.training.loop import Cyclic, Piecewise, TrainResult, train
from robustlab.defenses.training.monitor import EpochStats, Flag, Monitor
from robustlab.defenses.training.carried import ATTA
from robustlab.defenses.training.recipes import NFGSM, PGDAT, TRADES, FastAT, Standard

RECIPES = ("standard", "pgdat", "trades", "fast", "nfgsm", "atta")
ARCHS = {"mnist-cnn": "mnist_cnn", "mnist_cnn": "mnist_cnn", "digits-mlp": "digits_mlp", "digits_mlp": "digits_mlp"}


@dataclass(frozen=True)
class JobSpec:
    """The settings of one job (each one a command-line option of the same name)."""

    recipe: str
    data: str
    arch: str
    out: Path
    threat: str = "linf:0.3"
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    schedule: str = "piecewise"
    optimizer: str = "adam"
    steps: int | None = None  # None: 10 for pgdat / trades, 1 for atta
    step_size: float | None = None
    beta: float = 6.0
    alpha: float | None = None
    noise: float = 2.0
    checks: int = 0
    random_start: bool = True
    warmup: float = 0.0
    seed: int = 0
    n: int | None = None
    held_out: int = 500
    checkpoint_every: int = 100
    resume: bool = False
    store: Path | None = None
    stop_on_overfit: bool = False
    device: str = "cpu"


def build_recipe(spec: JobSpec) -> Any:
    from robustlab.threats import parse_threat

    if spec.recipe not in RECIPES:
        raise ValueError(f"recipe: expected one of {RECIPES}, got {spec.recipe!r}")
    if spec.recipe == "standard":
        return Standard()
    threat = parse_threat(spec.threat)
    if spec.recipe == "pgdat":
        return PGDAT(threat, steps=10 if spec.steps is None else spec.steps, step_size=spec.step_size, random_start=spec.random_start,
                     warmup=spec.warmup)
    if spec.recipe == "trades":
        return TRADES(threat, beta=spec.beta, steps=10 if spec.steps is None else spec.steps, step_size=spec.step_size, warmup=spec.warmup)
    if spec.recipe == "atta":
        return ATTA(threat, steps=1 if spec.steps is None else spec.steps, step_size=spec.step_size, warmup=spec.warmup)
    if spec.recipe == "nfgsm":
        return NFGSM(threat, k=spec.noise, alpha=spec.alpha, warmup=spec.warmup, checks=spec.checks)
    return FastAT(threat, alpha=spec.alpha, random_start=spec.random_start, warmup=spec.warmup, checks=spec.checks)


def build_schedule(spec: JobSpec) -> Callable[[float], float]:
    if spec.schedule == "piecewise":
        return Piecewise(spec.lr)
    if spec.schedule == "cyclic":
        return Cyclic(spec.lr)
    raise ValueError(f"schedule: expected 'piecewise' or 'cyclic', got {spec.schedule!r}")


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def run_job(spec: JobSpec, *, on_step: Callable[[int, int, int, float], None] | None = None,
            on_epoch: Callable[[EpochStats, list[Flag]], None] | None = None,
            on_start: Callable[[int, int], None] | None = None) -> TrainResult:
    """Load the data, build the model from ``seed``, train, and (rank 0) write weights + card.

    The last ``held_out`` training points are kept out of training for the per-epoch figures.
    ``on_start(epochs, steps_per_epoch)`` is called once before training (progress bars)."""
    import robustlab as rl
    from robustlab.models.architectures import BUILDERS
    from robustlab.threats import parse_threat

    if spec.arch not in ARCHS:
        raise ValueError(f"arch: expected one of {sorted(ARCHS)}, got {spec.arch!r}")
    if spec.out.suffix != ".safetensors":
        raise ValueError(f"out: expected a .safetensors path, got {str(spec.out)!r}")
    recipe = build_recipe(spec)
    lr = build_schedule(spec)
    ckpt = checkpoint_path(spec.out)
    if ckpt.exists() and not spec.resume:
        raise ValueError(f"resume: a checkpoint {str(ckpt)!r} exists; pass --resume to continue it or delete it")
    x, y = rl.data.load(spec.data, "train", n=spec.n)
    if not 0 <= spec.held_out < x.shape[0]:
        raise ValueError(f"held_out: expected 0 <= held_out < {x.shape[0]} points, got {spec.held_out}")
    cut = x.shape[0] - spec.held_out
    val = (x[cut:], y[cut:]) if spec.held_out else None
    torch.manual_seed(spec.seed)
    model = BUILDERS[ARCHS[spec.arch]]()
    store = None
    if spec.store is not None:
        from robustlab.evaluation.store import Store
        store = Store(spec.store)
    monitor = Monitor(stop=("catastrophic_overfitting",) if spec.stop_on_overfit else ())
    if on_start is not None:
        on_start(spec.epochs, cut // spec.batch_size)
    spec.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        res = train(model, (x[:cut], y[:cut]), recipe, epochs=spec.epochs, batch_size=spec.batch_size, lr=lr,
                    optimizer=spec.optimizer, seed=spec.seed, checkpoint=ckpt,
                    checkpoint_every=spec.checkpoint_every, store=store, device=spec.device, val=val,
                    eval_threat=None if spec.recipe != "standard" else parse_threat(spec.threat),
                    monitor=monitor, on_step=on_step, on_epoch=on_epoch, name=ARCHS[spec.arch])
    finally:
        if store is not None:
            store.close()
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if rank == 0:
        card = {
            "architecture": ARCHS[spec.arch], "data": spec.data, "recipe": getattr(recipe, "spec", repr)(),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in spec.__dict__.items()},
            "lr": lr.spec(), "train_seconds": round(res.seconds, 1),
            "train_cpu_seconds": round(res.cpu_seconds, 1), "torch": torch.__version__,
            "platform": platform.platform(), "history": [h.as_dict() for h in res.history],
            "flags": [f.__dict__ for f in res.flags], "stopped": res.stopped, "best_epoch": res.best_epoch,
            "run_id": res.run_id, "processes": world,
        }
        rl.models.save(model.cpu(), spec.out, card)
    return res


def card_json(out: Path) -> dict:
    return json.loads(out.with_suffix(".json").read_text())
