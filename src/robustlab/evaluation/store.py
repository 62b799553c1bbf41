"""The result store: an embedded SQLite database (stdlib sqlite3, WAL mode).

Tables:
    runs      one row per run: identity hash, config, model hash, data, threat, code version,
              timestamps, status ("running" until the last batch lands, then "done"; read
              back as "interrupted" when no live process holds it), summary.
    batches   one row per finished batch (committed together with its outcomes and costs).
    outcomes  one row per evaluated point: label, clean correctness, robustness, the attack that
              broke it, the adversarial distance.
    costs     one row per (batch, attack): points attacked, broken, forward/backward calls, seconds.
    diagnostics  one row per gradient-masking check of a finished run: name, status, figure,
              explanation, and the whole entry as JSON (cost and details included).
    certificates one row per (point, certifier) where certifiers ran: certified, radius, margin
              lower bound, prediction (schema 2).
    cert_costs   one row per (batch, certifier): points tried, certified, forward calls, seconds.
    metrics      one row per step of a run of another kind: a training epoch, a policy episode
              (schema 2): the step number and a JSON object of figures.
    examples     adversarial points kept for the report's gallery (schema 2).

Runs have a ``kind`` ("evaluation", "training", "policy", ...; schema 2). The schema version is
``PRAGMA user_version``: a store written by an older release is migrated in place when opened
for writing (``MIGRATIONS``), and read as it is when opened read-only.

Each batch is written in a single transaction, so a killed run loses at most the batch in
flight, and a rerun with the same identity skips every batch already stored.
"""
from __future__ import annotations

import json
import os
import sqlite3

try:
    import fcntl
except ImportError:  # Windows: no liveness check; killed runs read "running"
    fcntl = None  # type: ignore[assignment]
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from robustlab.evaluation.schema import _CORE, MIGRATIONS, SCHEMA, SCHEMA_V2, SCHEMA_VERSION, _damaged  # noqa: F401


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
    kind: str = "evaluation"
    error: str | None = None


class Store:
    """A robustlab result store at ``path`` (created if missing)."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        """Open (or, unless ``readonly``, create) the store at ``path``.

        A SQLite file that is not a robustlab store, or a damaged one, raises ValueError naming
        ``store`` before anything is written to it. ``readonly`` opens the file read-only (for
        ``runs``, ``report``, ``leaderboard``) so a store on a read-only disk can still be read.
        """
        self.path = Path(path)
        self.readonly = readonly
        self._held: dict[str, int] = {}
        if self.path.is_dir():
            raise ValueError(f"store: {str(self.path)!r} is a directory, expected a database file path")
        if not self.path.parent.exists():
            raise ValueError(f"store: folder {str(self.path.parent)!r} does not exist")
        exists = self.path.is_file() and self.path.stat().st_size > 0
        if readonly and not exists:
            raise ValueError(f"store: no store at {str(self.path)!r}")
        if not readonly and not exists and not os.access(self.path.parent, os.W_OK):
            raise ValueError(f"store: cannot write {str(self.path)!r} (folder {str(self.path.parent)!r} is read-only)")
        try:
            if readonly or (exists and not os.access(self.path, os.W_OK)):
                self.readonly = True
                self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=60.0)
            else:
                self.conn = sqlite3.connect(str(self.path), timeout=60.0)
            version = self._check_schema(exists)
            if not self.readonly:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=FULL")
                self._migrate(version)
        except sqlite3.DatabaseError as e:
            if hasattr(self, "conn"):
                self.conn.close()
            raise _damaged(self.path, e) from None
        except BaseException:
            if hasattr(self, "conn"):
                self.conn.close()
            raise
        self.version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _check_schema(self, exists: bool) -> int:
        """The store's schema version; ValueError if the file holds another program's tables."""
        if exists:
            check = self.conn.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'no answer'}")
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables:
            for table, cols in _CORE.items():
                have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")} if table in tables else set()
                if not cols <= have:
                    raise ValueError(f"store: {str(self.path)!r} is a SQLite database but not a robustlab store "
                                     f"(its table {table!r} lacks {sorted(cols - have)}); nothing was written to it")
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ValueError(f"store: {str(self.path)!r} has schema version {version}, newer than this robustlab "
                             f"({SCHEMA_VERSION}); upgrade robustlab to read it")
        return version if tables else -1

    def _migrate(self, version: int) -> None:
        with self.conn:
            if version == -1:  # a new store
                self.conn.executescript(SCHEMA)
                version = 0
            elif version == 0:
                self.conn.executescript(SCHEMA)  # tables added within release 0.1.0 (diagnostics)
            while version < SCHEMA_VERSION:
                for stmt in MIGRATIONS[version]:
                    words = stmt.split()
                    if words[:2] == ["ALTER", "TABLE"]:  # idempotent: a migration cut short reruns
                        cols = {r[1] for r in self.conn.execute(f"PRAGMA table_info({words[2]})")}
                        if words[5] in cols:
                            continue
                    self.conn.execute(stmt)
                version = SCHEMA_VERSION if version == 0 else version + 1
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        for run_id in list(getattr(self, "_held", {})):
            self._release(run_id)
        self.conn.close()

    # -- which runs have a live process ------------------------------------------------------
    # The process that opens (or resumes) a run holds an exclusive flock on a small file beside
    # the store until the run finishes, fails or the store closes. A run still "running" whose
    # lock nobody holds was killed (kill -9, a crash, a power cut): ``runs`` calls it interrupted.
    def _lock_path(self, run_id: str) -> Path:
        return self.path.with_name(f".{self.path.name}.{run_id}.lock")

    def _hold(self, run_id: str) -> None:
        if fcntl is None or run_id in self._held:
            return
        try:
            fd = os.open(self._lock_path(run_id), os.O_CREAT | os.O_RDWR, 0o644)
        except OSError:  # a folder we may not write: no liveness, the run still works
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another live process runs it too
            os.close(fd)
            return
        self._held[run_id] = fd

    def _release(self, run_id: str) -> None:
        fd = self._held.pop(run_id, None)
        if fd is None:
            return
        try:
            self._lock_path(run_id).unlink(missing_ok=True)
        except OSError:
            pass
        os.close(fd)  # closing drops the flock

    def is_live(self, run_id: str) -> bool | None:
        """Whether a live process holds run ``run_id`` (None where flock is not available)."""
        if fcntl is None:
            return None
        if run_id in self._held:
            return True
        try:
            fd = os.open(self._lock_path(run_id), os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.readonly:
            raise ValueError(f"store: cannot write {str(self.path)!r} (opened read-only)")

    def open_run(self, run_id: str, *, config: dict[str, Any], config_hash: str, model_hash: str,
                 data: dict[str, Any], threat: str, code_version: str, n: int, attacks: list[str],
                 kind: str = "evaluation") -> bool:
        """Register a run; return True if it already existed (and so may be resumed). A run that
        failed earlier is marked running again."""
        self._writable()
        now = time.time()
        with self.conn:
            row = self.conn.execute("SELECT run_id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None:
                self.conn.execute("UPDATE runs SET updated = ?, status = CASE status WHEN 'done' THEN 'done' "
                                  "ELSE 'running' END, error = NULL WHERE run_id = ?", (now, run_id))
        if row is not None:
            self._hold(run_id)
            return True
        with self.conn:
            self.conn.execute(
                "INSERT INTO runs (run_id, created, updated, status, config, config_hash, model_hash, data,"
                " threat, code_version, n, attacks, kind) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, now, now, json.dumps(config, sort_keys=True), config_hash, model_hash,
                 json.dumps(data, sort_keys=True), threat, code_version, n, json.dumps(attacks), kind),
            )
        self._hold(run_id)
        return False

    def write_batch(self, run_id: str, start: int, size: int, seconds: float,
                    outcomes: Iterable[tuple], costs: Iterable[tuple[int, int, int, int, int, float]],
                    certificates: Iterable[tuple] = (), cert_costs: Iterable[tuple] = (),
                    examples: Iterable[tuple] = ()) -> None:
        """Commit one batch atomically.

        ``outcomes`` rows: (idx, label, clean_correct, robust, broken_by, distance[, adv_pred]);
        ``costs`` rows: (attack, attacked, broken, forward, backward, seconds);
        ``certificates`` rows: (idx, certifier, certified, radius, bound, prediction);
        ``cert_costs`` rows: (certifier, attempted, certified, forward, seconds);
        ``examples`` rows: (idx, attack, adv_pred, payload bytes).
        """
        self._writable()
        rows = [(run_id, *r, None) if len(r) == 6 else (run_id, *r) for r in outcomes]
        with self.conn:
            self.conn.execute("INSERT INTO batches VALUES (?, ?, ?, ?)", (run_id, start, size, seconds))
            self.conn.executemany("INSERT INTO outcomes (run_id, idx, label, clean_correct, robust, broken_by,"
                                  " distance, adv_pred) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self.conn.executemany("INSERT INTO costs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                  [(run_id, start, *c) for c in costs])
            self.conn.executemany("INSERT INTO certificates VALUES (?, ?, ?, ?, ?, ?, ?)",
                                  [(run_id, *c) for c in certificates])
            self.conn.executemany("INSERT INTO cert_costs VALUES (?, ?, ?, ?, ?, ?, ?)",
                                  [(run_id, start, *c) for c in cert_costs])
            self.conn.executemany("INSERT OR REPLACE INTO examples VALUES (?, ?, ?, ?, ?)",
                                  [(run_id, *e) for e in examples])
            self.conn.execute("UPDATE runs SET updated = ? WHERE run_id = ?", (time.time(), run_id))

    def write_metrics(self, run_id: str, step: int, metrics: dict[str, Any]) -> None:
        """Commit one step of a run (a training epoch, a policy episode): ``metrics`` a JSON-able
        dict. Rewriting a step replaces it."""
        self._writable()
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?)",
                              (run_id, int(step), json.dumps(metrics, sort_keys=True, default=float)))
            self.conn.execute("UPDATE runs SET updated = ? WHERE run_id = ?", (time.time(), run_id))

    def metrics(self, run_id: str) -> list[tuple[int, dict[str, Any]]]:
        """[(step, metrics)] of a run, by step."""
        if self.version < 2:
            return []
        rows = self.conn.execute("SELECT step, metrics FROM metrics WHERE run_id = ? ORDER BY step",
                                 (run_id,)).fetchall()
        return [(int(s), json.loads(m)) for s, m in rows]

    def fail_run(self, run_id: str, error: str) -> None:
        """Mark a run failed (its finished batches stay; rerunning the same command resumes it)."""
        self._writable()
        with self.conn:
            self.conn.execute("UPDATE runs SET status = 'failed', error = ?, updated = ? WHERE run_id = ?",
                              (error, time.time(), run_id))
        self._release(run_id)

    def write_diagnostics(self, run_id: str, entries: list[dict[str, Any]]) -> None:
        """Replace a run's diagnostics; each entry a dict with name, status, figure, explanation."""
        self._writable()
        with self.conn:
            self.conn.execute("DELETE FROM diagnostics WHERE run_id = ?", (run_id,))
            self.conn.executemany(
                "INSERT INTO diagnostics VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, i, e["name"], e["status"], e.get("figure"), e["explanation"],
                  json.dumps(e, sort_keys=True, default=str)) for i, e in enumerate(entries)])

    def certificates(self, run_id: str, start: int = 0, stop: int | None = None) -> list[tuple]:
        """Rows (idx, certifier, certified, radius, bound, prediction) ordered by idx, certifier."""
        if self.version < 2:
            return []
        stop = 2**62 if stop is None else stop
        return self.conn.execute(
            "SELECT idx, certifier, certified, radius, bound, prediction FROM certificates"
            " WHERE run_id = ? AND idx >= ? AND idx < ? ORDER BY idx, certifier", (run_id, start, stop)).fetchall()

    def cert_costs(self, run_id: str) -> list[tuple]:
        """Rows (start, certifier, attempted, certified, forward, seconds)."""
        if self.version < 2:
            return []
        return self.conn.execute("SELECT start, certifier, attempted, certified, forward, seconds FROM cert_costs"
                                 " WHERE run_id = ? ORDER BY start, certifier", (run_id,)).fetchall()

    def examples(self, run_id: str, limit: int = 1000) -> list[tuple]:
        """Rows (idx, attack, adv_pred, payload) of the adversarial points kept for the gallery."""
        if self.version < 2:
            return []
        return self.conn.execute("SELECT idx, attack, adv_pred, payload FROM examples WHERE run_id = ?"
                                 " ORDER BY idx LIMIT ?", (run_id, limit)).fetchall()

    def diagnostics(self, run_id: str) -> list[dict[str, Any]]:
        """A run's stored diagnostics (dicts, in the order they ran); empty if none."""
        rows = self.conn.execute("SELECT entry FROM diagnostics WHERE run_id = ? ORDER BY pos", (run_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def finish_run(self, run_id: str, summary: dict[str, Any]) -> None:
        self._writable()
        with self.conn:
            self.conn.execute("UPDATE runs SET status = 'done', updated = ?, summary = ? WHERE run_id = ?",
                              (time.time(), json.dumps(summary, sort_keys=True), run_id))
        self._release(run_id)

    # -- reading ---------------------------------------------------------------------------
    def done_batches(self, run_id: str) -> dict[int, int]:
        """{batch start: size} of the batches already committed for a run."""
        rows = self.conn.execute("SELECT start, size FROM batches WHERE run_id = ?", (run_id,)).fetchall()
        return {int(s): int(z) for s, z in rows}

    def outcomes(self, run_id: str, start: int = 0, stop: int | None = None,
                 with_prediction: bool = False) -> list[tuple]:
        """Rows (idx, label, clean_correct, robust, broken_by, distance[, adv_pred]) ordered by idx
        (adv_pred: the model's prediction at the adversarial point; None where not stored)."""
        stop = 2**62 if stop is None else stop
        pred = (", adv_pred" if self.version >= 2 else ", NULL") if with_prediction else ""
        return self.conn.execute(
            f"SELECT idx, label, clean_correct, robust, broken_by, distance{pred} FROM outcomes"
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
        extra = ", r.kind, r.error" if self.version >= 2 else ", 'evaluation', NULL"
        try:
            rows = self.conn.execute(
                "SELECT r.run_id, r.created, r.updated, r.status, r.config, r.model_hash, r.data, r.threat,"
                " r.code_version, r.n, r.attacks, r.summary,"
                " (SELECT COUNT(*) FROM batches b WHERE b.run_id = r.run_id),"
                " (SELECT COALESCE(SUM(size), 0) FROM batches b WHERE b.run_id = r.run_id)"
                f"{extra} FROM runs r ORDER BY r.created DESC").fetchall()
        except sqlite3.DatabaseError as e:
            raise _damaged(self.path, e) from None
        return [RunInfo(r[0], r[1], r[2], self._status(r[0], r[3]), json.loads(r[4]), r[5], json.loads(r[6]), r[7],
                        r[8], r[9], json.loads(r[10]), json.loads(r[11]) if r[11] else None, r[12], r[13], r[14], r[15])
                for r in rows]

    def _status(self, run_id: str, status: str) -> str:
        """"running" only while a live process holds the run; else "interrupted" (resumable)."""
        return "interrupted" if status == "running" and self.is_live(run_id) is False else status

    def run(self, run_id: str) -> RunInfo:
        """One run by id or unique id prefix."""
        matches = [r for r in self.runs() if r.run_id.startswith(run_id)]
        if len(matches) != 1:
            raise ValueError(f"run: {'no' if not matches else 'more than one'} run matches {run_id!r} in {self.path}")
        return matches[0]
