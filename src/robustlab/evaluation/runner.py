"""``evaluate``: clean, certified and empirical robust accuracy of a model under a threat, per
sample, batched, resumable through the result store.

Per batch: the deployed model classifies the clean points; certifiers run on them (a sound lower
bound); then the attacks run in order (``attacks.sequence.run_in_order``) on the clean-correct
points against the model's attack view (``attack_view()``: BPDA, EOT, detector logits; a
reduced-precision search is one more view), and each returned point is checked by the threat
(``admits``) and judged by the deployed model, never taken from the attack's word. A point both
certified and broken raises ``UnsoundCertificate``: a wrong certificate is a bug, not a number.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks.base import Attack, ModelGuard
from robustlab.attacks.losses import rejects
from robustlab.attacks.sequence import attack_name
from robustlab.batch import Inputs, count, data_hash, take
from robustlab.certify.base import certifier_name
from robustlab.evaluation.attack_plan import (  # noqa: F401 (callers reach resolve_* and default_attacks through runner)
    adaptive_attacks_of,
    default_attacks,
    resolve_attacks,
    resolve_certifiers,
    without_early_stop,
)
from robustlab.evaluation.batch import (  # noqa: F401
    BatchOutcome,
    UnsoundCertificate,
    commit_batch,
    run_batch,
)
from robustlab.evaluation.store import Store
from robustlab.models.access import n_classes_of
from robustlab.models.precision import check_precision, with_precision
from robustlab.models.views import attack_view_of, model_spec
from robustlab.results import AttackSummary, CertSummary, EvalReport
from robustlab.threats import LpBall, check_threat
from robustlab.validation import (
    check_inputs,
    check_labels_in_range,
    check_model,
    check_positive_int,
    check_seed,
)

CODE_VERSION = "0.1.0"
VIEWS = ("adaptive", "naive")

ProgressFn = Callable[[int, int], None]  # (points done, points total)


class EvaluationFailed(RuntimeError):
    """The model or an attack raised inside a batch; finished batches are kept in the store."""


def attack_config(attack: object) -> dict[str, Any]:
    """A JSON-able description of a configured attack or certifier (its constructor arguments).
    An attack whose constructor changed may give its earlier layout by ``identity_config()``, so
    the run ids of stores written before the change stay the same."""
    legacy = getattr(attack, "identity_config", None)
    if callable(legacy):
        return {"type": type(attack).__name__, **legacy()}
    if dataclasses.is_dataclass(attack) and not isinstance(attack, type):
        fields = {f.name: getattr(attack, f.name) for f in dataclasses.fields(attack)}
        return {"type": type(attack).__name__,
                **{k: (v.spec() if callable(getattr(v, "spec", None)) and not isinstance(v, type) else v)
                   for k, v in fields.items()}}
    text = repr(attack)
    if " at 0x" in text:  # an object's default repr names its address: not an identity across runs
        text = f"{type(attack).__module__}.{type(attack).__qualname__}"
    return {"type": type(attack).__name__, "repr": text}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def run_identity(model: object, x: Inputs, y: Tensor, threat: object, attacks: Sequence[Attack], batch_size: int,
                 seed: int, precision: str = "fp32", certifiers: Sequence[object] = (),
                 view: str = "adaptive") -> tuple[str, dict[str, Any], str, str]:
    """(run_id, config, model_hash, data_sha256) of an evaluation: the run id is a hash of the
    config (threat spec, attacks, certifiers, batch size, seed, precision, view, the model's
    defense settings), the model's weights, the data and the code version, so the same run
    resumes and any change starts a new one. Keys absent at their defaults keep the ids of
    runs stored before they existed."""
    from robustlab.models.loading import fingerprint

    config: dict[str, Any] = {"threat": threat.spec(), "attacks": [attack_config(a) for a in attacks],  # type: ignore[attr-defined]
                              "batch_size": batch_size, "seed": seed}
    if precision != "fp32":
        config["precision"] = precision
    if certifiers:
        config["certifiers"] = [attack_config(c) for c in certifiers]
    spec = model_spec(model)
    if spec is not None:
        config["model_spec"] = spec
    if view != "adaptive":
        config["view"] = view
    model_hash = fingerprint(model)
    data_sha = data_hash(x, y.to(torch.int64))
    run_id = _hash({"config": config, "model": model_hash, "data": data_sha, "code": CODE_VERSION})[:16]
    return run_id, config, model_hash, data_sha


def view_of(model: object, view: str) -> object:
    """What the attacks query: ``attack_view()`` ("adaptive") or ``naive_view()`` ("naive")."""
    if view == "naive":
        naive = getattr(model, "naive_view", None)
        if not callable(naive):
            raise ValueError("view: 'naive' needs a model with naive_view() (a defense wrapper)")
        return naive()
    return attack_view_of(model)


def _check_data(x: object, y: object, threat: object) -> None:
    if isinstance(x, Tensor):
        check_inputs(x, y)
    elif isinstance(x, list):
        if not x:
            raise ValueError("x: empty batch (N = 0)")
        if not all(isinstance(s, str) for s in x):
            raise TypeError("x: expected a tensor or a list of strings")
        check_inputs(torch.zeros(len(x), 1), y)  # the labels' checks
    else:
        raise TypeError(f"x: expected a torch.Tensor (or a list of str for text models), got {type(x).__name__}")
    threat.validate(x)  # type: ignore[attr-defined]


def evaluate(
    model: nn.Module,
    x: Inputs,
    y: Tensor,
    threat: object,
    attacks: Sequence[Attack] | str | None = None,
    *,
    certifiers: Sequence[object] | str | None = None,
    batch_size: int = 500,
    seed: int = 0,
    store: str | Path | None = None,
    data: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
    diagnostics: bool | str = True,
    precision: str = "fp32",
    view: str = "adaptive",
    name: str | None = None,
    on_step: Callable[[str, int], None] | None = None,
) -> EvalReport:
    """Clean, certified and robust accuracy of ``model`` on (x, y) under ``threat``.

    Args:
        model: maps inputs (N, C, H, W) in [0, 1] (or a list of N strings for a text model) to
            (N, K) logits; run in eval mode, restored after. A defended model may define
            ``attack_view()`` (what the attacks see), ``naive_view()``, ``spec()`` (its settings,
            part of the run identity), ``reseed(seed)`` (random defenses, seeded per batch) and
            ``rejects = True`` (K + 1 scores, the last one "reject").
        x: inputs; y: (N,) int64 labels.
        threat: any threat of ``robustlab.threats`` (e.g. ``LpBall("linf", 0.3)``, or your own
            class with spec/validate/distance/admits).
        attacks: attacks run in order on the still-robust points; default PGD-40. A preset name
            (or the default) also runs the defense's own ``adaptive_attacks(threat)`` last.
        certifiers: certifiers run on every point before the attacks (``robustlab.certify``, or a
            registry spec such as "crown"); their per-sample results go to ``report.certified``.
        batch_size: points per batch; each finished batch is committed to the store.
        seed: base seed; batch b's attacks get seed ``seed * 1_000_003 + start_of_b``, so a
            batch's outcome does not depend on which batches ran before it.
        store: path of a SQLite result store; with it the run is resumable.
        data: a description of the data recorded with the run ({"name": ..., "split": ...});
            default: what ``rl.data.load`` attached to x, if x came from it.
        progress: called as ``progress(points_done, points_total)`` after every batch.
        diagnostics: the gradient-masking checks (``evaluation.diagnostics``): True or "fast" (the
            default: budgeted to at most 25% of the evaluation's own passes, on as many points as
            that buys, 8 to 100), "full" (every check on up to 100 points), False (none). Their cost
            is reported per check, not in the report's totals.
        precision: "fp32", "bf16" or "fp16": the attacks search on the attack view under autocast
            while success is decided by the model itself.
        view: "adaptive" (attack ``attack_view()``, the default) or "naive" (attack the bare
            ``naive_view()`` and transfer: what an evaluation that ignores the defense reports).
        name: the model's name in the store, runs and leaderboard (default ``model.name`` if set).
        on_step: called as ``on_step(attack_name, forward_passes)`` on every forward pass of the
            attacked model inside an attack, so a long attack on few points shows movement.

    Returns:
        EvalReport with per-sample ``clean_correct``, ``certified``, ``robust``, ``broken_by``,
        ``distance``.

    Raises:
        UnsoundCertificate: a certified point was broken.
        EvaluationFailed: the model or an attack raised inside a batch (the run is marked failed
            in the store; finished batches are kept and a rerun resumes).
    """
    check_model(model)
    check_threat(threat)
    _check_data(x, y, threat)
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_seed(seed)
    if view not in VIEWS:
        raise ValueError(f"view: expected one of {VIEWS}, got {view!r}")
    if diagnostics not in (True, False, "fast", "full", "off"):
        raise ValueError(f"diagnostics: expected True/False or 'fast', 'full', 'off', got {diagnostics!r}")
    diagnostics = {True: "fast", False: False, "off": False}.get(diagnostics, diagnostics)  # type: ignore[arg-type]
    attack_list = resolve_attacks(attacks, threat)
    if view == "adaptive" and (attacks is None or isinstance(attacks, str)):
        attack_list += adaptive_attacks_of(model, threat)
    if getattr(model, "random", False):
        attack_list = [without_early_stop(a) for a in attack_list]
    cert_list = resolve_certifiers(certifiers)
    check_precision(precision, model)
    names = [attack_name(a) for a in attack_list]
    y = y.to(torch.int64)
    n = count(x)

    with ModelGuard(model):
        attack_model = with_precision(view_of(model, view), precision)
        if isinstance(x, Tensor):
            n_classes = n_classes_of(model, x[:1])
            if n_classes is not None:  # None: a label-only model that was not told its classes
                check_labels_in_range(y, n_classes - (1 if rejects(model) else 0))

        run_id, config, model_hash, data_sha = run_identity(model, x, y, threat, attack_list, batch_size, seed,
                                                            precision, cert_list, view)
        data_desc = dict(data or getattr(x, "robustlab_data", None) or {})  # rl.data.load tags its x
        data_desc["sha256"] = data_sha
        model_name = name or getattr(model, "name", None)
        if isinstance(model_name, str) and "model" not in data_desc:
            data_desc["model"] = model_name

        db = Store(store) if store is not None else None
        done: dict[int, int] = {}
        if db is not None:
            db.open_run(run_id, config=config, config_hash=_hash(config), model_hash=model_hash,
                        data=data_desc, threat=threat.spec(), code_version=CODE_VERSION, n=n,  # type: ignore[attr-defined]
                        attacks=names)
            done = db.done_batches(run_id)

        clean_correct = torch.zeros(n, dtype=torch.bool)
        robust = torch.zeros(n, dtype=torch.bool)
        certified = torch.zeros(n, dtype=torch.bool) if cert_list else None
        broken_by = torch.full((n,), -1, dtype=torch.int64)
        distance = torch.full((n,), float("nan"))
        per_attack = [[0, 0, 0, 0, 0.0] for _ in attack_list]  # attacked, broken, fwd, bwd, seconds
        per_cert = [[0, 0, 0, 0.0] for _ in cert_list]  # attempted, certified, fwd, seconds
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
                    if certified is not None:
                        for idx, _, ok, *_ in db.certificates(run_id, start, stop):  # type: ignore[union-attr]
                            certified[idx] |= bool(ok)
                    resumed += stop - start
                    if progress:
                        progress(stop, n)
                    continue
                try:
                    b = run_batch(model, attack_model, take(x, slice(start, stop)), y[start:stop], threat,
                                  attack_list, cert_list, seed * 1_000_003 + start, start,
                                  examples=8 if db is not None else 0, on_step=on_step)
                except (UnsoundCertificate, KeyboardInterrupt):
                    raise
                except Exception as e:  # the model or an attack failed: say where, keep what is stored
                    msg = (f"batch {start}:{stop} failed: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                           + (f"; batches before it are kept in {db.path}, rerun to resume" if db is not None and start else ""))
                    if db is not None:
                        db.fail_run(run_id, msg)
                    raise EvaluationFailed(msg) from e
                clean_correct[start:stop], robust[start:stop] = b.clean_correct.cpu(), b.robust.cpu()
                broken_by[start:stop], distance[start:stop] = b.broken_by.cpu(), b.distance.cpu().to(distance.dtype)
                if certified is not None and b.certified is not None:
                    certified[start:stop] = b.certified.cpu()
                extra_fwd += b.extra_forward
                for j, c in enumerate(b.attack_costs):
                    _add(per_attack[j], c)
                for k, *c in b.cert_costs:
                    _add(per_cert[k], c)
                if db is not None:
                    commit_batch(db, run_id, b)
                if progress:
                    progress(stop, n)
            if db is not None:
                # Costs of batches finished in earlier (interrupted) invocations count too.
                per_attack = [[0, 0, 0, 0, 0.0] for _ in attack_list]
                for _, j, *c in db.costs(run_id):
                    _add(per_attack[j], c)
                per_cert = [[0, 0, 0, 0.0] for _ in cert_list]
                for _, k, *c in db.cert_costs(run_id):
                    _add(per_cert[k], c)
        except BaseException:
            if db is not None:
                db.close()
            raise

        report = _report(n, threat, names, [certifier_name(c) for c in cert_list], clean_correct, robust, certified,
                         broken_by, distance, per_attack, per_cert, extra_fwd, time.time() - t_start,
                         run_id if db is not None else None, resumed, config)
        if diagnostics:
            try:
                report.diagnostics = _diagnose(attack_model, model, x, y, threat, attack_list, report, seed, db,
                                               run_id, diagnostics)
            except BaseException:
                if db is not None:
                    db.close()
                raise
        if db is not None:
            summary = {"clean_accuracy": report.clean_accuracy, "robust_accuracy": report.robust_accuracy,
                       "forward_calls": report.forward_calls, "backward_calls": report.backward_calls,
                       "attacks": [dataclasses.asdict(s) for s in report.attacks]}
            if certified is not None:
                summary["certified_accuracy"] = report.certified_accuracy
                summary["certifiers"] = [dataclasses.asdict(s) for s in report.certificates]
            db.finish_run(run_id, summary)
            db.close()
    return report


def _add(total: list, values: Sequence) -> None:
    """Add a cost row (counts and seconds) into a running total, in place."""
    for i, v in enumerate(values):
        total[i] += v


def _report(n: int, threat: object, names: list[str], cert_names: list[str], clean_correct: Tensor, robust: Tensor,
            certified: Tensor | None, broken_by: Tensor, distance: Tensor, per_attack: list, per_cert: list,
            extra_fwd: int, seconds: float, run_id: str | None, resumed: int, config: dict) -> EvalReport:
    summaries = []
    remaining = int(clean_correct.sum())
    for j, nm in enumerate(names):
        att, _, fw, bw, sec = per_attack[j]
        brk = int((broken_by == j).sum())
        remaining -= brk
        summaries.append(AttackSummary(nm, remaining / n, brk, int(att), int(fw), int(bw), float(sec)))
    certs = []
    cum = 0
    for k, nm in enumerate(cert_names):
        att, cnt, fw, sec = per_cert[k]
        cum += int(cnt)
        certs.append(CertSummary(nm, cum / n, int(cnt), int(att), int(fw), float(sec)))
    return EvalReport(
        n=n, threat=threat.spec(), clean_accuracy=float(clean_correct.float().mean()),  # type: ignore[attr-defined]
        robust_accuracy=float(robust.float().mean()), attacks=summaries,
        clean_correct=clean_correct, robust=robust, broken_by=broken_by, distance=distance,
        forward_calls=extra_fwd + sum(int(p[2]) for p in per_attack) + sum(int(p[2]) for p in per_cert),
        backward_calls=sum(int(p[3]) for p in per_attack),
        seconds=seconds, run_id=run_id, resumed_points=resumed, config=config,
        certified=certified, certificates=certs,
    )


def _diagnose(attack_model: object, model: object, x: Inputs, y: Tensor, threat: object, attacks: list[Attack],
              report: EvalReport, seed: int, db: Store | None, run_id: str, level: str) -> list:
    """The run's diagnostics: from the store when already computed, else run (on the attack view,
    judged by the deployed model) and stored."""
    from robustlab.evaluation.diagnostics import (
        DIAGNOSTICS_SHARE,
        Diagnostic,
        fast_points,
        run_diagnostics,
    )

    stored = db.diagnostics(run_id) if db is not None else []
    stored_level = "fast" if any(d["name"] == "scope" for d in stored) else "full"
    if stored and (level == "fast" or stored_level == "full"):  # a full set also answers a fast request
        return [Diagnostic.from_dict(d) for d in stored]
    if not isinstance(x, Tensor) or not isinstance(threat, LpBall):
        return []  # the masking checks walk Lp balls on tensors
    n_points = 100
    if level == "fast":
        n_points = fast_points(DIAGNOSTICS_SHARE * (report.forward_calls + report.backward_calls), attacks, report.n)
    found = run_diagnostics(attack_view_of(model), x, y, threat, attacks, clean_correct=report.clean_correct,
                            robust=report.robust, seed=seed, n_points=n_points, level=str(level))
    if any(type(a).__name__ == "FastEval" for a in attacks):  # the shortcut audits itself
        from robustlab.evaluation.checks_fast_audit import audit_fast

        found.append(audit_fast(attack_view_of(model), x, y, threat, report.robust, seed=seed))
    if db is not None:
        db.write_diagnostics(run_id, [d.to_dict() for d in found])
    return found


__all__ = ["evaluate", "run_identity", "run_batch", "commit_batch", "BatchOutcome", "resolve_attacks",
           "resolve_certifiers", "attack_name", "attack_config", "UnsoundCertificate", "EvaluationFailed",
           "CODE_VERSION", "VIEWS"]
