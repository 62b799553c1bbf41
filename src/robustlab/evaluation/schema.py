"""The result store's schema: the tables of each version and the migrations between them
(``PRAGMA user_version``). ``evaluation.store`` opens, checks and migrates with these."""
from __future__ import annotations

from pathlib import Path

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

SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS certificates (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    idx INTEGER NOT NULL,
    certifier INTEGER NOT NULL,
    certified INTEGER NOT NULL,
    radius REAL,
    bound REAL,
    prediction INTEGER,
    PRIMARY KEY (run_id, idx, certifier)
);
CREATE TABLE IF NOT EXISTS cert_costs (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    start INTEGER NOT NULL,
    certifier INTEGER NOT NULL,
    attempted INTEGER NOT NULL,
    certified INTEGER NOT NULL,
    forward INTEGER NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (run_id, start, certifier)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    step INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS examples (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    idx INTEGER NOT NULL,
    attack INTEGER NOT NULL,
    adv_pred INTEGER,
    payload BLOB NOT NULL,
    PRIMARY KEY (run_id, idx)
);
"""

SCHEMA_VERSION = 2
# user_version -> statements that bring a store from it to the next version. A store made by
# release 0.1.0 has user_version 0 and the SCHEMA tables.
MIGRATIONS: dict[int, list[str]] = {
    0: ["ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'evaluation'",
        "ALTER TABLE runs ADD COLUMN error TEXT",
        "ALTER TABLE outcomes ADD COLUMN adv_pred INTEGER",
        *[s.strip() for s in SCHEMA_V2.split(";") if s.strip()]],
    1: [],
}
# The tables (and columns) a robustlab store of any version has; a SQLite file without them
# is somebody else's database and is never written to.
_CORE = {"runs": {"run_id", "status", "config", "threat"}, "batches": {"run_id", "start", "size"},
         "outcomes": {"run_id", "idx", "robust"}}


def _damaged(path: Path, e: Exception) -> ValueError:
    return ValueError(f"store: {str(path)!r} is damaged or not a SQLite database ({e}); "
                      "nothing was written to it (restore it from a copy, or use another --store)")
