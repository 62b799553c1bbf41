"""``train``: the one training loop every recipe runs in (resumable, distributed, monitored).

Determinism: the data order of epoch e is a permutation drawn from a generator seeded with
(seed, e), the recipe's random numbers come from one generator per process (seed + rank) whose
state is checkpointed, and the learning rate is a pure function of training progress. So a run
killed at any step and resumed from its last checkpoint replays exactly the steps an
uninterrupted run takes, and ends with bit-identical weights (on the same device and thread
count).
"""
from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from robustlab.defenses.training import _store, checkpoint as ckpt
from robustlab.defenses.training.carried import carries_memory
from robustlab.defenses.training.monitor import EpochStats, Flag, Monitor
from robustlab.defenses.training.recipes import ramp, recipe_threat


@dataclass(frozen=True)
class Piecewise:
    """Learning rate ``lr``, multiplied by ``factor`` at each milestone (fractions of training)."""

    lr: float = 1e-3
    milestones: tuple[float, ...] = (0.7, 0.9)
    factor: float = 0.1

    def __call__(self, progress: float) -> float:
        return self.lr * self.factor ** sum(progress >= m for m in self.milestones)

    def spec(self) -> str:
        return f"piecewise:{self.lr}:{list(self.milestones)}:{self.factor}"


@dataclass(frozen=True)
class Cyclic:
    """One triangular cycle (Smith 2017; Wong et al. 2020): 0 -> ``lr_max`` at ``peak`` -> 0."""

    lr_max: float = 5e-3
    peak: float = 0.4

    def __call__(self, progress: float) -> float:
        if progress < self.peak:
            return self.lr_max * progress / self.peak
        return self.lr_max * max(0.0, 1.0 - progress) / (1.0 - self.peak)

    def spec(self) -> str:
        return f"cyclic:{self.lr_max}:{self.peak}"


@dataclass
class TrainResult:
    """What ``train`` returns. ``history``: one EpochStats per finished epoch (resumed epochs
    included); ``flags``: the monitor's flags; ``stopped``: the monitor stopped the run (and
    ``model`` holds the best epoch's weights if it rolled back); ``seconds``: wall time of the
    whole run over all its resumptions; ``cpu_seconds``: CPU time of this process (rank 0 under
    DDP) over all resumptions, the figure to quote on a shared machine where wall time is
    inflated; ``resumed_at``: (epoch, step) of the checkpoint this call started from, or None."""

    model: nn.Module
    history: list[EpochStats] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    stopped: bool = False
    best_epoch: int | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    resumed_at: tuple[int, int] | None = None
    run_id: str | None = None


def data_order(seed: int, epoch: int, n: int) -> Tensor:
    """The (n,) permutation of epoch ``epoch``: a function of (seed, epoch) only."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g)


def make_optimizer(name: str, params: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {name!r}")


def evaluate_epoch(model: nn.Module, val: tuple[Tensor, Tensor], threat: Any | None, steps: int = 10,
                   batch: int = 500) -> tuple[float, float | None, float | None]:
    """Clean, FGSM and PGD-``steps`` accuracy of ``model`` on the held-out ``val`` slice.

    FGSM: one step of length eps, no random start. PGD: random start, step 2.5 eps / steps,
    seed 0 (the same points every epoch). Accuracy under attack counts a point robust when the
    attack fails on it and it is classified correctly."""
    from robustlab.attacks import FGSM, PGD

    xv, yv = val
    was = model.training
    model.eval()
    clean, fgsm, pgd = 0, 0, 0
    for i in range(0, xv.shape[0], batch):
        xb, yb = xv[i:i + batch], yv[i:i + batch]
        with torch.no_grad():
            clean += int((model(xb).argmax(1) == yb).sum())
        if threat is not None:
            fgsm += int((~FGSM(threat)(model, xb, yb).success).sum())
            pgd += int((~PGD(threat, steps=steps, seed=0)(model, xb, yb).success).sum())
    model.train(was)
    n = xv.shape[0]
    return clean / n, (pgd / n if threat is not None else None), (fgsm / n if threat is not None else None)


def _fingerprint(x: Tensor, y: Tensor) -> str:
    """A cheap identity of the training set (shape, a strided sample of values, the labels)."""
    flat = x.detach().reshape(-1)
    sample = flat[:: max(1, flat.numel() // 100_000)].float().cpu().numpy().tobytes()
    h = hashlib.sha256(sample + y.detach().cpu().numpy().tobytes()).hexdigest()[:16]
    return f"{list(x.shape)}:{h}"


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    recipe: Any,
    *,
    epochs: int,
    batch_size: int = 100,
    lr: Callable[[float], float] = Piecewise(),
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    store: Any = None,
    device: str | torch.device = "cpu",
    val: tuple[Tensor, Tensor] | None = None,
    eval_threat: Any = None,
    monitor: Monitor | None = None,
    on_step: Callable[[int, int, int, float], None] | None = None,
    on_epoch: Callable[[EpochStats, list[Flag]], None] | None = None,
    name: str = "",
) -> TrainResult:
    """Train ``model`` in place with ``recipe`` and return a :class:`TrainResult`.

    Args:
        model: maps (B, ...) inputs in [0, 1] to (B, K) logits; seed torch before building it.
        data: (x (N, ...) float in [0, 1], y (N,) int64) training set, on any device.
        recipe: any object with ``loss(model, x, y, generator, progress) -> scalar Tensor``;
            a recipe with ``init_memory`` (:mod:`.carried`, e.g. ATTA) also gets
            ``memory=`` (its per-example state, kept in the checkpoint) and ``index=`` (the
            batch's rows in ``data``); such recipes run in one process only.
        epochs: passes over the data; each has N // batch_size steps (the remainder is dropped).
        batch_size: global points per optimiser step (split evenly over DDP processes).
        lr: learning rate as a function of progress in [0, 1] (:class:`Piecewise`, :class:`Cyclic`).
        optimizer: "adam" or "sgd" (momentum 0.9).
        seed: seeds the data order and the recipe's generator (seed the model yourself).
        checkpoint: path of the resumable checkpoint: written atomically after every epoch and
            every ``checkpoint_every`` steps (0: epochs only); if it exists, training resumes there.
        store: a robustlab Store: one ``training`` run, one metrics row per epoch.
        device: where the model and batches live.
        val: held-out (x, y) slice measured after every epoch (clean, FGSM, PGD-10 accuracy).
        eval_threat: threat of those figures; default the recipe's ``threat``.
        monitor: failure-mode thresholds and actions (see :mod:`.monitor`); default flags only.
        on_step: called (epoch, step, steps_per_epoch, loss) after each step (progress bars).
        on_epoch: called (stats, flags) after each epoch (tables).
        name: a label kept in the run spec (e.g. the architecture).

    Under ``torch.distributed`` (initialised by the caller, e.g. ``python -m robustlab.train``
    under torchrun) the model is wrapped in DistributedDataParallel, each of the W processes
    takes a contiguous 1/W of each global batch, and only rank 0 writes checkpoints and store rows.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected an int >= 1, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    if not callable(getattr(recipe, "loss", None)):
        raise TypeError(f"recipe: expected an object with a loss(model, x, y, generator, progress) method, "
                        f"got {type(recipe).__name__}")
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor)
            and isinstance(data[1], Tensor) and data[0].shape[0] == data[1].shape[0]):
        raise TypeError("data: expected a pair (x (N, ...), y (N,)) of tensors with the same N")
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every: expected steps >= 0, got {checkpoint_every}")
    rank, world = _dist()
    if batch_size % world:
        raise ValueError(f"batch_size: {batch_size} is not divisible by the {world} processes")
    x, y = data
    n = x.shape[0]
    carried = carries_memory(recipe)
    if carried and world > 1:
        raise ValueError(f"recipe: {type(recipe).__name__} keeps one perturbation per training point; "
                         "run it in one process (no DDP)")
    spe = n // batch_size
    if spe == 0:
        raise ValueError(f"batch_size: {batch_size} exceeds the {n} training points")
    device = torch.device(device)
    model.to(device)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = make_optimizer(optimizer, model.parameters(), lr(0.0), weight_decay)
    threat = eval_threat if eval_threat is not None else recipe_threat(recipe)
    monitor = monitor or Monitor()
    spec_fn = getattr(recipe, "spec", None)
    spec = {
        "recipe": spec_fn() if callable(spec_fn) else repr(recipe),
        "epochs": epochs, "batch_size": batch_size, "seed": seed, "optimizer": optimizer,
        "weight_decay": weight_decay, "lr": lr.spec() if hasattr(lr, "spec") else repr(lr),
        "n": n, "world": world, "name": name,
        "data": _fingerprint(x, y),
    }
    gen = torch.Generator(device=device).manual_seed(int(seed) + 7919 * rank)
    result = TrainResult(model=model)
    start_epoch, start_step, loss_sum, elapsed, cpu_before = 0, 0, 0.0, 0.0, 0.0
    best_acc, best_state = -1.0, None
    memory: Tensor | None = None
    state = ckpt.load(checkpoint) if checkpoint is not None else None
    if state is not None:
        if state["spec"] != spec:
            raise ValueError(f"checkpoint: {str(checkpoint)!r} belongs to another run "
                             f"({state['spec']} != {spec}); delete it or use another path")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        gen.set_state(state["gens"][rank])
        start_epoch, start_step = int(state["epoch"]), int(state["step"])
        loss_sum, elapsed = float(state["loss_sum"]), float(state["elapsed"])
        cpu_before = float(state.get("cpu", 0.0))
        result.history = [EpochStats(**h) for h in state["history"]]
        result.flags = [Flag(**f) for f in state["flags"]]
        result.best_epoch = state["best_epoch"]
        best_acc = float(state["best_acc"])
        result.resumed_at = (start_epoch, start_step)
        if state.get("stopped"):  # the monitor ended this run: rerunning it changes nothing
            result.stopped, start_epoch = True, epochs
        if carried:
            memory = state["memory"].to(device)
    if carried and memory is None:
        memory = recipe.init_memory(x, gen).to(device)
    run_id = None
    if store is not None and rank == 0:
        run_id = _store.run_id_of(spec)
        _store.open_run(store, run_id, spec, getattr(threat, "spec", lambda: "none")(), n)
        result.run_id = run_id

    def save(epoch: int, step: int) -> None:
        """Checkpoint the state after ``step`` steps of epoch ``epoch`` (every rank calls it)."""
        gens: list[Any] = [gen.get_state()]
        if world > 1:
            gens = [None] * world
            dist.all_gather_object(gens, gen.get_state())
        if checkpoint is None or rank != 0:
            return
        ckpt.save_atomic({
            "spec": spec, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "torch_rng": torch.get_rng_state(), "gens": gens, "epoch": epoch, "step": step,
            "loss_sum": loss_sum, "elapsed": elapsed + time.time() - t_call,
            "cpu": cpu_before + time.process_time() - c_call,
            "history": [h.as_dict() for h in result.history],
            "flags": [f.__dict__ for f in result.flags], "best_epoch": result.best_epoch, "best_acc": best_acc,
            "stopped": result.stopped,
            **({"memory": memory.cpu()} if memory is not None else {}),
        }, checkpoint)

    t_call, c_call = time.time(), time.process_time()
    for epoch in range(start_epoch, epochs):
        perm = data_order(seed, epoch, n)
        t0 = time.time()
        first = start_step if epoch == start_epoch else 0
        if epoch != start_epoch:
            loss_sum = 0.0
        lr_now = lr(0.0)
        for i in range(first, spe):
            progress = (epoch * spe + i) / (epochs * spe)
            lr_now = lr(progress)
            for group in opt.param_groups:
                group["lr"] = lr_now
            idx = perm[i * batch_size:(i + 1) * batch_size]
            share = batch_size // world
            idx = idx[rank * share:(rank + 1) * share]
            xb, yb = x[idx].to(device), y[idx].to(device)
            model.train()
            if memory is not None:
                loss = recipe.loss(net, xb, yb, gen, progress, memory=memory, index=idx.to(device))
            else:
                loss = recipe.loss(net, xb, yb, gen, progress)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lv = loss.detach()
            if world > 1:
                dist.all_reduce(lv)
                lv = lv / world
            loss_sum += float(lv)
            if on_step is not None and rank == 0:
                on_step(epoch, i + 1, spe, float(lv))
            if checkpoint_every and (epoch * spe + i + 1) % checkpoint_every == 0 and i + 1 < spe:
                save(epoch, i + 1)
        model.eval()
        clean, pgd, fgsm = evaluate_epoch(model, val, threat) if val is not None else (None, None, None)
        warmup = getattr(recipe, "warmup", 0.0)
        eps_scale = ramp((epoch * spe + spe - 1) / (epochs * spe), warmup) if isinstance(warmup, (int, float)) else 1.0
        stats = EpochStats(epoch=epoch + 1, loss=loss_sum / spe, clean_acc=clean, pgd_acc=pgd, fgsm_acc=fgsm,
                           seconds=time.time() - t0, lr=lr_now, eps_scale=eps_scale)
        result.history.append(stats)
        flags = monitor.check(result.history)
        result.flags.extend(flags)
        score = pgd if pgd is not None else (clean if clean is not None else -float(stats.loss))
        if score >= best_acc:
            best_acc, result.best_epoch = score, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
            if checkpoint is not None and rank == 0:
                ckpt.save_atomic(best_state, ckpt.best_path(checkpoint))
        if run_id is not None:
            _store.write_epoch(store, run_id, epoch + 1,
                               {**stats.as_dict(), "flags": [f"{f.kind}: {f.message}" for f in flags]})
        if on_epoch is not None and rank == 0:
            on_epoch(stats, flags)
        loss_sum = 0.0
        save(epoch + 1, 0)
        if any(f.kind in monitor.stop for f in flags):
            result.stopped = True
            if monitor.rollback:
                if best_state is None and checkpoint is not None:
                    best_state = ckpt.load(ckpt.best_path(checkpoint))
                if best_state is not None:
                    model.load_state_dict(best_state)
            save(epoch + 1, 0)  # records the stop (and the rolled-back weights)
            break
    result.seconds = elapsed + time.time() - t_call
    result.cpu_seconds = cpu_before + time.process_time() - c_call
    if run_id is not None:
        last = result.history[-1].as_dict() if result.history else {}
        _store.finish(store, run_id, {**last, "best_epoch": result.best_epoch, "stopped": result.stopped,
                                      "seconds": result.seconds, "flags": [f.__dict__ for f in result.flags]})
    model.eval()
    return result
