"""The result store: an embedded SQLite database (stdlib sqlite3, WAL mode).

Tables:
    runs      one row per run: identity hash, config, model hash, data, threat, code version,
              timestamps, status ("running" until the last batch lands, then "done"), summary.
    batches   one row per finished batch (committed together with its outcomes and costs).
    outcomes  one row per evaluated point: label, clean correctness, robustness, the attack that
              broke it, the adversarial distance.
    costs     one row per (batch, attack): points attacked, broken, forward/backward calls, seconds.
    diagnostics  one row per gradient-masking check of a finished run: name, status, figure,
              explanation, and the whole entry as JSON (cost and details included).

Each batch is written in a single transaction, so a killed run loses at most the batch in
flight, and a rerun with the same identity skips every batch already stored.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    model_hash TEXT NOT NULL,
    data TEXT NOT NULL,
    threat TEXT NOT NULL,
    code_version TEXT NOT NULL,
    n INTEGER NOT NULL,
    attacks TEXT NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    start INTEGER NOT NULL,
    size INTEGER NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (run_id, start)
);
CREATE TABLE IF NOT EXISTS outcomes (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    idx INTEGER NOT NULL,
    label INTEGER NOT NULL,
    clean_correct INTEGER NOT NULL,
    robust INTEGER NOT NULL,
    broken_by INTEGER NOT NULL,
    distance REAL,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS costs (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    start INTEGER NOT NULL,
    attack INTEGER NOT NULL,
    attacked INTEGER NOT NULL,
    broken INTEGER NOT NULL,
    forward INTEGER NOT NULL,
    backward INTEGER NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (run_id, start, attack)
);
CREATE TABLE IF NOT EXISTS diagnostics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    pos INTEGER NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    figure REAL,
    explanation TEXT NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);
"""


@dataclass
class RunInfo:
    run_id: str
    created: float
    updated: float
    status: str
    config: dict[str, Any]
    model_hash: str
    data: dict[str, Any]
    threat: str
    code_version: str
    n: int
    attacks: list[str]
    summary: dict[str, Any] | None
    batches_done: int
    points_done: int


class Store:
    """A robustlab result store at ``path`` (created if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"store: {str(self.path)!r} is a directory, expected a database file path")
        if not self.path.parent.exists():
            raise ValueError(f"store: folder {str(self.path.parent)!r} does not exist")
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=60.0)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ValueError(f"store: {str(self.path)!r} is not a robustlab SQLite store ({e})") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------
    def open_run(self, run_id: str, *, config: dict[str, Any], config_hash: str, model_hash: str,
                 data: dict[str, Any], threat: str, code_version: str, n: int, attacks: list[str]) -> bool:
        """Register a run; return True if it already existed (and so may be resumed)."""
        now = time.time()
        with self.conn:
            row = self.conn.execute("SELECT run_id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None:
                self.conn.execute("UPDATE runs SET updated = ? WHERE run_id = ?", (now, run_id))
                return True
            self.conn.execute(
                "INSERT INTO runs (run_id, created, updated, status, config, config_hash, model_hash, data,"
                " threat, code_version, n, attacks) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, now, now, json.dumps(config, sort_keys=True), config_hash, model_hash,
                 json.dumps(data, sort_keys=True), threat, code_version, n, json.dumps(attacks)),
            )
        return False

    def write_batch(self, run_id: str, start: int, size: int, seconds: float,
                    outcomes: Iterable[tuple[int, int, int, int, int, float | None]],
                    costs: Iterable[tuple[int, int, int, int, int, float]]) -> None:
        """Commit one batch atomically. ``outcomes`` rows: (idx, label, clean_correct, robust,
        broken_by, distance); ``costs`` rows: (attack, attacked, broken, forward, backward, seconds)."""
        with self.conn:
            self.conn.execute("INSERT INTO batches VALUES (?, ?, ?, ?)", (run_id, start, size, seconds))
            self.conn.executemany("INSERT INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?)",
                                  [(run_id, *r) for r in outcomes])
            self.conn.executemany("INSERT INTO costs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                  [(run_id, start, *c) for c in costs])
            self.conn.execute("UPDATE runs SET updated = ? WHERE run_id = ?", (time.time(), run_id))

    def write_diagnostics(self, run_id: str, entries: list[dict[str, Any]]) -> None:
        """Replace a run's diagnostics; each entry a dict with name, status, figure, explanation."""
        with self.conn:
            self.conn.execute("DELETE FROM diagnostics WHERE run_id = ?", (run_id,))
            self.conn.executemany(
                "INSERT INTO diagnostics VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, i, e["name"], e["status"], e.get("figure"), e["explanation"],
                  json.dumps(e, sort_keys=True, default=str)) for i, e in enumerate(entries)])

    def diagnostics(self, run_id: str) -> list[dict[str, Any]]:
        """A run's stored diagnostics (dicts, in the order they ran); empty if none."""
        rows = self.conn.execute("SELECT entry FROM diagnostics WHERE run_id = ? ORDER BY pos", (run_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def finish_run(self, run_id: str, summary: dict[str, Any]) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET status = 'done', updated = ?, summary = ? WHERE run_id = ?",
                              (time.time(), json.dumps(summary, sort_keys=True), run_id))

    # -- reading ---------------------------------------------------------------------------
    def done_batches(self, run_id: str) -> dict[int, int]:
        """{batch start: size} of the batches already committed for a run."""
        rows = self.conn.execute("SELECT start, size FROM batches WHERE run_id = ?", (run_id,)).fetchall()
        return {int(s): int(z) for s, z in rows}

    def outcomes(self, run_id: str, start: int = 0, stop: int | None = None) -> list[tuple]:
        """Rows (idx, label, clean_correct, robust, broken_by, distance) ordered by idx."""
        stop = 2**62 if stop is None else stop
        return self.conn.execute(
            "SELECT idx, label, clean_correct, robust, broken_by, distance FROM outcomes"
            " WHERE run_id = ? AND idx >= ? AND idx < ? ORDER BY idx", (run_id, start, stop)).fetchall()

    def costs(self, run_id: str) -> list[tuple]:
        """Rows (start, attack, attacked, broken, forward, backward, seconds)."""
        return self.conn.execute(
            "SELECT start, attack, attacked, broken, forward, backward, seconds FROM costs"
            " WHERE run_id = ? ORDER BY start, attack", (run_id,)).fetchall()

    def batch_seconds(self, run_id: str) -> float:
        row = self.conn.execute("SELECT COALESCE(SUM(seconds), 0) FROM batches WHERE run_id = ?", (run_id,)).fetchone()
        return float(row[0])

    def runs(self) -> list[RunInfo]:
        """All runs, newest first."""
        rows = self.conn.execute(
            "SELECT r.run_id, r.created, r.updated, r.status, r.config, r.model_hash, r.data, r.threat,"
            " r.code_version, r.n, r.attacks, r.summary,"
            " (SELECT COUNT(*) FROM batches b WHERE b.run_id = r.run_id),"
            " (SELECT COALESCE(SUM(size), 0) FROM batches b WHERE b.run_id = r.run_id)"
            " FROM runs r ORDER BY r.created DESC").fetchall()
        return [RunInfo(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], json.loads(r[6]), r[7], r[8], r[9],
                        json.loads(r[10]), json.loads(r[11]) if r[11] else None, r[12], r[13]) for r in rows]

    def run(self, run_id: str) -> RunInfo:
        """One run by id or unique id prefix."""
        matches = [r for r in self.runs() if r.run_id.startswith(run_id)]
        if len(matches) != 1:
            raise ValueError(f"run: {'no' if not matches else 'more than one'} run matches {run_id!r} in {self.path}")
        return matches[0]
