"""Policy runs in the result store: one run (kind "policy") per identity, one metrics row per
episode (``Store.write_metrics`` / ``Store.metrics``)."""
from __future__ import annotations

import hashlib
import json
from typing import Any


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
                      attacks=list(config["settings"]), kind="policy")
        store.open_run(self.run_id, **kwargs)

    def done(self) -> dict[int, dict[str, Any]]:
        """{episode index: metrics} of the episodes already stored."""
        return {int(step): dict(m) for step, m in self.store.metrics(self.run_id)}

    def write(self, episode: int, metrics: dict[str, Any]) -> None:
        """Commit one episode's row."""
        self.store.write_metrics(self.run_id, step=episode, metrics=metrics)

    def finish(self, summary: dict[str, Any]) -> None:
        self.store.finish_run(self.run_id, summary)


def _code_version() -> str:
    try:
        from robustlab import __version__

        return str(__version__)
    except ImportError:
        return "unknown"
