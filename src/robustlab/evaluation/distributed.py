"""Scale-out: the batches of an evaluation sharded across Ray workers, one result store.

    report = evaluate_distributed(model, x, y, threat, attacks, store="runs.db", workers=4)
    report = evaluate_distributed(..., address="ray://head:10001")   # an existing cluster

The run is the same run as ``evaluate``'s: same identity (config, model, data, code), and each
batch is attacked with the seed of its position (``seed * 1_000_003 + start``), so every
per-sample outcome equals the one-process outcome whatever worker ran it. Workers return their
batch's outcomes; the driver commits each batch to the store the moment it arrives, so a
killed run loses at most the batches in flight and a rerun (in one process or on Ray) skips
every stored batch. The driver, not the workers, writes: SQLite must not be shared over a
network file system, and workers on other machines may not see the store's folder at all.

Finally ``evaluate`` runs in the driver on the now complete store: it reads every outcome back,
aggregates, runs the diagnostics and closes the run, exactly as a resumed one-process run.
Ray is an optional dependency (``pip install "robustlab[ray]"``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustlab.attacks.base import Attack, ModelGuard
from robustlab.evaluation import runner
from robustlab.evaluation.store import Store
from robustlab.models.precision import check_precision, with_precision
from robustlab.results import EvalReport
from robustlab.threats import check_threat
from robustlab.validation import check_inputs, check_model, check_positive_int


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError('workers: Ray is not installed; pip install "robustlab[ray]" (or ray) to shard '
                         "an evaluation, or drop --workers/--ray") from None
    return ray


def _batch_task(model: Any, x: Tensor, y: Tensor, threat: object, attacks: list, certifiers: list, seed: int,
                start: int, threads: int, precision: str = "fp32", view: str = "adaptive") -> runner.BatchOutcome:
    """One batch, in a worker: the runner's own batch function, under the same guard."""
    torch.set_num_threads(threads)
    with ModelGuard(model):
        b = runner.run_batch(model, with_precision(runner.view_of(model, view), precision), x, y, threat, attacks,
                             certifiers, seed, start)
    for f in ("labels", "clean_correct", "robust", "broken_by", "distance", "adv_pred"):
        setattr(b, f, getattr(b, f).cpu())
    return b


def evaluate_distributed(
    model: Any,
    x: Tensor,
    y: Tensor,
    threat: object,
    attacks: Sequence[Attack] | str | None = None,
    *,
    store: str | Path,
    certifiers: Sequence[object] | str | None = None,
    workers: int = 2,
    address: str | None = None,
    batch_size: int = 500,
    seed: int = 0,
    data: dict[str, Any] | None = None,
    progress: runner.ProgressFn | None = None,
    diagnostics: bool = True,
    threads_per_worker: int = 1,
    precision: str = "fp32",
    view: str = "adaptive",
) -> EvalReport:
    """``evaluate`` with its batches run as Ray tasks; arguments as for ``evaluate``.

    Args:
        store: the SQLite result store (required: the shards meet there).
        workers: tasks in flight at once; with no ``address`` a local Ray instance with this many
            CPUs is started (and shut down afterwards) unless Ray is already initialised.
        address: a running Ray cluster ("auto", "ray://host:10001", ...); the store stays on the
            driver's machine.
        threads_per_worker: torch threads inside each task.

    Returns:
        The EvalReport; ``resumed_points`` counts the points already stored before this call.
    """
    ray = _import_ray()
    check_model(model)
    check_threat(threat)
    check_inputs(x, y)
    batch_size = check_positive_int(batch_size, "batch_size")
    workers = check_positive_int(workers, "workers")
    if store is None:
        raise ValueError("store: a distributed evaluation needs a result store (--store)")
    attack_list = runner.resolve_attacks(attacks, threat)
    cert_list = runner.resolve_certifiers(certifiers)
    y = y.to(torch.int64)
    n = x.shape[0]
    with ModelGuard(model):
        n_classes = runner.n_classes_of(model, x[:2])
    if n_classes is not None:  # None: a label-only model that was not told its classes
        runner.check_labels_in_range(y, n_classes)

    check_precision(precision, model)  # before Ray starts
    run_id, config, model_hash, data_sha = runner.run_identity(model, x, y, threat, attack_list, batch_size, seed,
                                                               precision, cert_list, view)
    data_desc = dict(data or {})
    data_desc["sha256"] = data_sha
    db = Store(store)
    started_ray = False
    try:
        db.open_run(run_id, config=config, config_hash=runner._hash(config), model_hash=model_hash,
                    data=data_desc, threat=threat.spec(), code_version=runner.CODE_VERSION, n=n,  # type: ignore[attr-defined]
                    attacks=[runner.attack_name(a) for a in attack_list])
        done = db.done_batches(run_id)
        resumed = sum(done.values())
        pending = [s for s in range(0, n, batch_size) if s not in done]
        finished = resumed
        if progress:
            progress(finished, n)
        if pending:
            if not ray.is_initialized():
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
                started_ray = True
            task = ray.remote(num_cpus=1)(_batch_task)
            model_ref = ray.put(model)
            attacks_ref = ray.put(attack_list)
            in_flight: dict[Any, tuple[int, int]] = {}
            queue = list(pending)
            while queue or in_flight:
                while queue and len(in_flight) < workers:
                    start = queue.pop(0)
                    stop = min(n, start + batch_size)
                    ref = task.remote(model_ref, x[start:stop].cpu(), y[start:stop].cpu(), threat, attacks_ref,
                                      cert_list, seed * 1_000_003 + start, start, threads_per_worker, precision, view)
                    in_flight[ref] = (start, stop)
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    start, stop = in_flight.pop(ref)
                    runner.commit_batch(db, run_id, ray.get(ref))
                    finished += stop - start
                    if progress:
                        progress(finished, n)
    finally:
        db.close()
        if started_ray:
            ray.shutdown()
    # Every batch is stored: evaluate reads them back, aggregates, diagnoses, closes the run.
    report = runner.evaluate(model, x, y, threat, attack_list, certifiers=cert_list, batch_size=batch_size, seed=seed,
                             store=store, data=data, diagnostics=diagnostics, precision=precision, view=view)
    if report.run_id != run_id:  # pragma: no cover - the identity formula drifted from evaluate's
        raise RuntimeError(f"distributed run id {run_id} differs from evaluate's {report.run_id}")
    report.resumed_points = resumed
    return report


__all__ = ["evaluate_distributed"]
