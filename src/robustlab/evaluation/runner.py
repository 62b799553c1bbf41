"""``evaluate``: clean and robust accuracy of a model under a list of attacks, per sample,
batched, resumable through the result store.

Attacks run in order; each sees only the points that are clean-correct and still unbroken, so
the robust accuracy is the per-sample worst case over attacks (mean over points of the minimum,
never the reverse). Success is recomputed here from the returned points (re-projected into the
ball), never taken from the attack's word.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks.base import Attack, ModelGuard
from robustlab.attacks.gradient import PGD
from robustlab.evaluation.store import Store
from robustlab.models.access import n_classes_of, predict
from robustlab.models.precision import check_precision, with_precision
from robustlab.results import AttackSummary, EvalReport
from robustlab.threats import DIST_TOL, LpBall, check_lp
from robustlab.validation import (
    check_inputs,
    check_labels_in_range,
    check_model,
    check_positive_int,
)

CODE_VERSION = "0.1.0"

ProgressFn = Callable[[int, int], None]  # (points done, points total)


def attack_name(attack: object) -> str:
    return str(getattr(attack, "name", type(attack).__name__))


def attack_config(attack: object) -> dict[str, Any]:
    """A JSON-able description of a configured attack (its constructor arguments)."""
    if dataclasses.is_dataclass(attack) and not isinstance(attack, type):
        fields = {f.name: getattr(attack, f.name) for f in dataclasses.fields(attack)}
        return {"type": type(attack).__name__,
                **{k: (str(v) if isinstance(v, LpBall) else v) for k, v in fields.items()}}
    return {"type": type(attack).__name__, "repr": repr(attack)}


def default_attacks(threat: LpBall) -> list[Attack]:
    """The default evaluation: PGD-40 with one random restart (cross-entropy)."""
    return [PGD(threat, steps=40, restarts=1)]


def resolve_attacks(attacks: Sequence[Attack] | str | None, threat: LpBall) -> list[Attack]:
    if attacks is None:
        return default_attacks(threat)
    if isinstance(attacks, str):
        from robustlab.evaluation.presets import build_attacks

        return build_attacks(attacks, threat)
    attacks = list(attacks)
    if not attacks:
        raise ValueError("attacks: expected at least one attack")
    for a in attacks:
        if not callable(a):
            raise TypeError(f"attacks: {a!r} is not callable")
    return attacks


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _data_hash(x: Tensor, y: Tensor) -> str:
    h = hashlib.sha256()
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def run_identity(model: object, x: Tensor, y: Tensor, threat: LpBall, attacks: Sequence[Attack], batch_size: int,
                 seed: int, precision: str = "fp32") -> tuple[str, dict[str, Any], str, str]:
    """(run_id, config, model_hash, data_sha256) of an evaluation: the run id is a hash of the
    config (threat, attacks, batch size, seed, precision), the model's weights, the data and the
    code version, so the same run resumes and any change starts a new one."""
    from robustlab.models.loading import fingerprint

    config: dict[str, Any] = {"threat": str(threat), "attacks": [attack_config(a) for a in attacks],
                              "batch_size": batch_size, "seed": seed}
    if precision != "fp32":  # absent for fp32, so runs stored before the option keep their identity
        config["precision"] = precision
    model_hash = fingerprint(model)
    data_sha = _data_hash(x, y.to(torch.int64))
    run_id = _hash({"config": config, "model": model_hash, "data": data_sha, "code": CODE_VERSION})[:16]
    return run_id, config, model_hash, data_sha


def _with_seed(attack: Attack, seed: int) -> Attack:
    if dataclasses.is_dataclass(attack) and any(f.name == "seed" for f in dataclasses.fields(attack)):
        return dataclasses.replace(attack, seed=seed)
    return attack


def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: LpBall,
    attacks: Sequence[Attack] | str | None = None,
    *,
    batch_size: int = 500,
    seed: int = 0,
    store: str | Path | None = None,
    data: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
    diagnostics: bool = True,
    precision: str = "fp32",
) -> EvalReport:
    """Clean accuracy and robust accuracy of ``model`` on (x, y) under ``threat``.

    Args:
        model: maps (N, C, H, W) in [0, 1] to (N, K) logits; run in eval mode, restored after.
        x: (N, C, H, W) float inputs in [0, 1]; y: (N,) int64 labels.
        threat: the perturbation set (e.g. ``LpBall("linf", 0.3)``).
        attacks: attacks run in order on the still-robust points; default PGD-40.
        batch_size: points per batch; each finished batch is committed to the store.
        seed: base seed; batch b's attacks get seed ``seed * 1_000_003 + start_of_b``, so a
            batch's outcome does not depend on which batches ran before it.
        store: path of a SQLite result store; with it the run is resumable: rerunning with the
            same model, data, threat, attacks and settings skips every stored batch.
        data: a description of the data (e.g. {"name": "mnist", "split": "test", "n": 1000})
            recorded with the run; the data's hash is always part of the run's identity.
        progress: called as ``progress(points_done, points_total)`` after every batch.
        diagnostics: run the gradient-masking checks (``evaluation.diagnostics``) on a subsample
            of at most 100 points and put them in ``EvalReport.diagnostics`` (and the store; a
            resumed run reuses the stored ones). Their cost is reported per check, not in the
            report's totals.
        precision: "fp32" (the model as it is), "bf16" or "fp16": the attacks search on the
            model run under autocast (``models.Autocast``: about 2x faster where bfloat16 is
            fast), while clean accuracy and every returned point are classified by the model
            itself, so a point counts as broken only if the full-precision model misclassifies
            it. Part of the run's identity.

    Returns:
        EvalReport with per-sample ``clean_correct``, ``robust``, ``broken_by``, ``distance``.
    """
    check_model(model)
    check_lp(threat)
    check_inputs(x, y)
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    attack_list = resolve_attacks(attacks, threat)
    check_precision(precision, model)
    names = [attack_name(a) for a in attack_list]
    y = y.to(torch.int64)
    n = x.shape[0]

    with ModelGuard(model):
        attack_model = with_precision(model, precision)  # made in eval mode, like the model
        n_classes = n_classes_of(model, x[:1])
        if n_classes is not None:  # None: a label-only model that was not told its classes
            check_labels_in_range(y, n_classes)

        run_id, config, model_hash, data_sha = run_identity(model, x, y, threat, attack_list, batch_size, seed,
                                                            precision)
        data_desc = dict(data or {})
        data_desc["sha256"] = data_sha

        db = Store(store) if store is not None else None
        done: dict[int, int] = {}
        if db is not None:
            db.open_run(run_id, config=config, config_hash=_hash(config), model_hash=model_hash,
                        data=data_desc, threat=str(threat), code_version=CODE_VERSION, n=n, attacks=names)
            done = db.done_batches(run_id)

        clean_correct = torch.zeros(n, dtype=torch.bool)
        robust = torch.zeros(n, dtype=torch.bool)
        broken_by = torch.full((n,), -1, dtype=torch.int64)
        distance = torch.full((n,), float("nan"))
        per_attack = [[0, 0, 0, 0, 0.0] for _ in attack_list]  # attacked, broken, fwd, bwd, seconds
        extra_fwd = 0
        resumed = 0
        t_start = time.time()
        try:
            for start in range(0, n, batch_size):
                stop = min(n, start + batch_size)
                if start in done:
                    if done[start] != stop - start:
                        raise ValueError(f"store: stored batch at {start} has size {done[start]}, expected {stop - start}")
                    for idx, _, cc, rb, bb, dist in db.outcomes(run_id, start, stop):  # type: ignore[union-attr]
                        clean_correct[idx], robust[idx], broken_by[idx] = bool(cc), bool(rb), bb
                        distance[idx] = float("nan") if dist is None else dist
                    resumed += stop - start
                    if progress:
                        progress(stop, n)
                    continue
                t_batch = time.time()
                xb, yb = x[start:stop], y[start:stop]
                outcome, costs = _run_batch(model, xb, yb, threat, attack_list, seed * 1_000_003 + start,
                                            attack_model=attack_model)
                cc, rb, bb, dist, fwd = outcome
                clean_correct[start:stop], robust[start:stop] = cc.cpu(), rb.cpu()
                broken_by[start:stop], distance[start:stop] = bb.cpu(), dist.cpu()
                extra_fwd += fwd
                for j, c in enumerate(costs):
                    for k in range(5):
                        per_attack[j][k] += c[k]
                if db is not None:
                    rows = [(start + i, int(yb[i]), int(cc[i]), int(rb[i]), int(bb[i]),
                             None if torch.isnan(dist[i]) else float(dist[i])) for i in range(stop - start)]
                    db.write_batch(run_id, start, stop - start, time.time() - t_batch, rows,
                                   [(j, *c) for j, c in enumerate(costs)])
                if progress:
                    progress(stop, n)
            if db is not None:
                # Costs of batches finished in earlier (interrupted) invocations count too.
                per_attack = [[0, 0, 0, 0, 0.0] for _ in attack_list]
                for _, j, att, brk, fw, bw, sec in db.costs(run_id):
                    for k, v in enumerate((att, brk, fw, bw, sec)):
                        per_attack[j][k] += v
        except BaseException:
            if db is not None:
                db.close()
            raise

        clean_acc = float(clean_correct.float().mean())
        robust_acc = float(robust.float().mean())
        summaries = []
        remaining = int(clean_correct.sum())
        for j, name in enumerate(names):
            att, brk, fw, bw, sec = per_attack[j]
            remaining -= int((broken_by == j).sum())
            summaries.append(AttackSummary(name, remaining / n, int((broken_by == j).sum()), int(att), int(fw), int(bw), float(sec)))
        seconds = time.time() - t_start  # this invocation only
        report = EvalReport(
            n=n, threat=str(threat), clean_accuracy=clean_acc, robust_accuracy=robust_acc, attacks=summaries,
            clean_correct=clean_correct, robust=robust, broken_by=broken_by, distance=distance,
            forward_calls=extra_fwd + sum(int(p[2]) for p in per_attack),
            backward_calls=sum(int(p[3]) for p in per_attack),
            seconds=seconds, run_id=run_id if db is not None else None, resumed_points=resumed, config=config,
        )
        if diagnostics:
            try:
                report.diagnostics = _diagnose(model, x, y, threat, attack_list, report, seed, db, run_id)
            except BaseException:
                if db is not None:
                    db.close()
                raise
        if db is not None:
            db.finish_run(run_id, {"clean_accuracy": clean_acc, "robust_accuracy": robust_acc,
                                   "forward_calls": report.forward_calls, "backward_calls": report.backward_calls,
                                   "attacks": [dataclasses.asdict(s) for s in summaries]})
            db.close()
    return report


def _diagnose(model, x: Tensor, y: Tensor, threat: LpBall, attacks: list[Attack], report: EvalReport,
              seed: int, db: Store | None, run_id: str) -> list:
    """The run's diagnostics: from the store when already computed, else run and stored."""
    from robustlab.evaluation.diagnostics import Diagnostic, run_diagnostics

    stored = db.diagnostics(run_id) if db is not None else []
    if stored:
        return [Diagnostic.from_dict(d) for d in stored]
    found = run_diagnostics(model, x, y, threat, attacks, clean_correct=report.clean_correct,
                            robust=report.robust, seed=seed)
    if db is not None:
        db.write_diagnostics(run_id, [d.to_dict() for d in found])
    return found


def _run_batch(model: nn.Module, x: Tensor, y: Tensor, threat: LpBall, attacks: list[Attack], seed: int,
               attack_model: object | None = None):
    """Clean pass, then each attack on the still-robust points. Returns per-sample outcomes,
    the forward passes spent outside the attacks, and per-attack costs.

    ``attack_model`` is what the attacks query (default ``model``; a reduced-precision
    ``Autocast`` wrapper); clean accuracy and success are always decided by ``model``."""
    attack_model = model if attack_model is None else attack_model
    exact = attack_model is model
    nb = x.shape[0]
    clean_correct = predict(model, x) == y
    extra_fwd = nb
    active = clean_correct.clone()
    broken_by = torch.where(clean_correct, -1, -2).to(torch.int64)
    distance = torch.where(clean_correct, float("nan"), 0.0).to(x.dtype)
    costs = []
    for j, attack in enumerate(attacks):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            costs.append((0, 0, 0, 0, 0.0))
            continue
        t0 = time.time()
        xs, ys = x[idx], y[idx]
        refined = getattr(attack_model, "refine_calls", 0)
        res = _with_seed(attack, seed + 7919 * j)(attack_model, xs, ys)
        refined = getattr(attack_model, "refine_calls", 0) - refined  # full-precision passes of Autocast
        secs = time.time() - t0
        # Trust nothing: re-project (a no-op for a correct attack) and re-classify.
        x_adv = threat.project(res.x_adv.detach().to(x.dtype), xs)
        moved = (x_adv - res.x_adv).abs().amax() if x_adv.numel() else 0.0
        if float(moved) > DIST_TOL:
            warnings.warn(f"{attack_name(attack)} returned points outside {threat}; they were projected back",
                          stacklevel=3)
        pred = predict(model, x_adv)
        extra_fwd += idx.numel()
        succ = pred != ys
        claimed = res.success.to(succ.device)
        if exact and bool((claimed & ~succ).any()):  # reduced precision: expected now and then
            warnings.warn(f"{attack_name(attack)} claimed {int((claimed & ~succ).sum())} successes the model "
                          "does not confirm; counted as failures", stacklevel=3)
        b = idx[succ]
        active[b] = False
        broken_by[b] = j
        if b.numel():  # LpBall.distance cannot reshape an empty batch
            distance[b] = threat.distance(x_adv[succ], xs[succ]).to(distance.dtype)
        costs.append((int(idx.numel()), int(b.numel()), int(res.forward_calls) + refined, int(res.backward_calls), secs))
    return (clean_correct, active, broken_by, distance, extra_fwd), costs
