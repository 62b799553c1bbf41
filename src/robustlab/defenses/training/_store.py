"""Training runs in the result store: one run of kind ``training``, one metrics row per epoch
(``Store.write_metrics(run_id, epoch, row)``; a resumed run rewrites the epoch it was in)."""
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
    store.open_run(run_id, config=spec, config_hash=run_id, model_hash="",
                   data={"n": n, "fingerprint": spec.get("data")}, threat=threat,
                   code_version=getattr(robustlab, "__version__", "dev"), n=n, attacks=[], kind="training")


def write_epoch(store: Any, run_id: str, epoch: int, metrics: dict[str, Any]) -> None:
    store.write_metrics(run_id, epoch, metrics)


def read_metrics(store: Any, run_id: str) -> list[tuple[int, dict[str, Any]]]:
    """The per-epoch rows of a training run, in epoch order."""
    return list(store.metrics(run_id))


def finish(store: Any, run_id: str, summary: dict[str, Any]) -> None:
    store.finish_run(run_id, summary)
