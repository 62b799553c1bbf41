"""Training runs in the result store: one ``training`` run, one metrics row per epoch.

Codes against ``Store.open_run(..., kind="training")`` and ``Store.write_metrics(run_id, step,
metrics)`` / ``Store.metrics(run_id)``. Against a store without them (before that API lands) it
registers a plain run and keeps the rows in a ``training_metrics`` table of the same database.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import robustlab


def run_id_of(spec: dict[str, Any]) -> str:
    """A stable id for a training run: a hash of its spec (recipe, data, schedule, seed)."""
    blob = json.dumps(spec, sort_keys=True, default=str)
    return "train-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def open_run(store: Any, run_id: str, spec: dict[str, Any], threat: str, n: int) -> None:
    kw = dict(config=spec, config_hash=run_id, model_hash="", data={"n": n, "data": spec.get("data")},
              threat=threat, code_version=getattr(robustlab, "__version__", "dev"), n=n, attacks=[])
    try:
        store.open_run(run_id, kind="training", **kw)
    except TypeError:  # a store without run kinds yet
        store.open_run(run_id, **kw)


def write_epoch(store: Any, run_id: str, epoch: int, metrics: dict[str, Any]) -> None:
    if hasattr(store, "write_metrics"):
        store.write_metrics(run_id, epoch, metrics)
        return
    with store.conn:
        store.conn.execute("CREATE TABLE IF NOT EXISTS training_metrics (run_id TEXT NOT NULL, step INTEGER NOT"
                           " NULL, metrics TEXT NOT NULL, PRIMARY KEY (run_id, step))")
        store.conn.execute("INSERT OR REPLACE INTO training_metrics VALUES (?, ?, ?)",
                           (run_id, epoch, json.dumps(metrics, sort_keys=True)))


def read_metrics(store: Any, run_id: str) -> list[tuple[int, dict[str, Any]]]:
    """The per-epoch rows of a training run, in epoch order."""
    if hasattr(store, "metrics"):
        return list(store.metrics(run_id))
    rows = store.conn.execute("SELECT step, metrics FROM training_metrics WHERE run_id = ? ORDER BY step",
                              (run_id,)).fetchall()
    return [(int(s), json.loads(m)) for s, m in rows]


def finish(store: Any, run_id: str, summary: dict[str, Any]) -> None:
    store.finish_run(run_id, summary)
