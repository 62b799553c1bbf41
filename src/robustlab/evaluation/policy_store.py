"""Policy runs in the result store: one run (kind "policy") per identity, one metrics row per
episode. Uses ``Store.open_run(..., kind="policy")`` and ``Store.write_metrics`` /
``Store.metrics`` where the store has them; on a store without them (before the core's metrics
table) the rows go to a ``policy_metrics`` table of the same SQLite file."""
from __future__ import annotations

import hashlib
import inspect
import json
from typing import Any

FALLBACK = """CREATE TABLE IF NOT EXISTS policy_metrics (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, metrics TEXT NOT NULL, PRIMARY KEY (run_id, step))"""


class PolicyRuns:
    """The store's view of one policy evaluation (identity = hash of ``config``)."""

    def __init__(self, store: Any, config: dict[str, Any]) -> None:
        for m in ("open_run", "finish_run"):
            if not callable(getattr(store, m, None)):
                raise TypeError(f"store: expected a robustlab Store, got {type(store).__name__} without {m}()")
        self.store = store
        blob = json.dumps(config, sort_keys=True)
        config_hash = hashlib.sha256(blob.encode()).hexdigest()[:16]
        self.run_id = f"policy-{config_hash}"
        kwargs = dict(config=config, config_hash=config_hash, model_hash=config["model_hash"],
                      data={"env": config["env"], "episodes": config["episodes"], "seed": config["seed"]},
                      threat=config["threat"], code_version=_code_version(), n=config["episodes"],
                      attacks=[s for s in config["settings"]])
        if "kind" in inspect.signature(store.open_run).parameters:
            kwargs["kind"] = "policy"
        store.open_run(self.run_id, **kwargs)
        self.native = callable(getattr(store, "write_metrics", None)) and callable(getattr(store, "metrics", None))
        if not self.native:
            with store.conn:
                store.conn.execute(FALLBACK)

    def done(self) -> dict[int, dict[str, Any]]:
        """{episode index: metrics} of the episodes already stored."""
        if self.native:
            return {int(step): dict(m) for step, m in self.store.metrics(self.run_id)}
        rows = self.store.conn.execute("SELECT step, metrics FROM policy_metrics WHERE run_id = ?", (self.run_id,))
        return {int(step): json.loads(m) for step, m in rows.fetchall()}

    def write(self, episode: int, metrics: dict[str, Any]) -> None:
        """Commit one episode's row."""
        if self.native:
            self.store.write_metrics(self.run_id, step=episode, metrics=metrics)
            return
        with self.store.conn:
            self.store.conn.execute("INSERT OR REPLACE INTO policy_metrics VALUES (?, ?, ?)",
                                    (self.run_id, episode, json.dumps(metrics, sort_keys=True)))

    def finish(self, summary: dict[str, Any]) -> None:
        self.store.finish_run(self.run_id, summary)


def _code_version() -> str:
    try:
        from robustlab import __version__

        return str(__version__)
    except ImportError:
        return "unknown"
