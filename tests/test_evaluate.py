"""evaluate(): per-sample outcomes, worst case over attacks, the store, resume after kill -9."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import robustlab as rl
from robustlab.attacks import FGSM, PGD
from robustlab.evaluation import Store


def test_report_is_consistent(std_model, mnist_test, linf03):
    x, y = mnist_test[0][:200], mnist_test[1][:200]
    attacks = [FGSM(linf03), PGD(linf03, steps=20)]
    r = rl.evaluate(std_model, x, y, linf03, attacks=attacks, batch_size=64, seed=0)
    assert r.n == 200 and r.clean_accuracy >= 0.97
    assert r.robust_accuracy <= r.attacks[0].robust_accuracy <= r.clean_accuracy
    assert r.robust_accuracy == pytest.approx(float(r.robust.float().mean()))
    # Worst case per sample: robust only if clean-correct and no attack broke it.
    assert torch.equal(r.robust, r.clean_correct & (r.broken_by == -1))
    assert torch.equal(r.broken_by == -2, ~r.clean_correct)
    # The second attack only saw the points the first left standing.
    assert r.attacks[1].attacked == int(r.clean_correct.sum()) - r.attacks[0].broken
    broken = r.broken_by >= 0
    assert bool((r.distance[broken] <= 0.3 + 1e-5).all()) and bool(r.distance[r.robust].isnan().all())
    assert r.forward_calls >= 200 and r.backward_calls > 0


def test_store_resume_skips_done_batches(std_model, mnist_test, linf03, tmp_path):
    x, y = mnist_test[0][:120], mnist_test[1][:120]
    db = tmp_path / "runs.db"
    kw = dict(attacks=[PGD(linf03, steps=5)], batch_size=50, seed=1, store=db, data={"name": "mnist"})
    first = rl.evaluate(std_model, x, y, linf03, **kw)
    again = rl.evaluate(std_model, x, y, linf03, **kw)
    assert again.run_id == first.run_id and again.resumed_points == 120
    assert torch.equal(first.robust, again.robust) and torch.equal(first.broken_by, again.broken_by)
    assert again.attacks[0].backward_calls == first.attacks[0].backward_calls  # costs come from the store
    with Store(db) as s:
        (run,) = s.runs()
        assert run.status == "done" and run.points_done == 120 and run.n == 120
        assert len(s.outcomes(run.run_id)) == 120
    # Another seed is another run.
    other = rl.evaluate(std_model, x, y, linf03, **{**kw, "seed": 2})
    assert other.run_id != first.run_id and other.resumed_points == 0


def _run_cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "robustlab.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _outcomes(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT idx, label, clean_correct, robust, broken_by, distance FROM outcomes"
                           " ORDER BY idx").fetchall()
    finally:
        con.close()


def _batches(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def test_kill_9_and_resume_gives_the_same_outcomes(tmp_path):
    args = ["evaluate", "--model", "mnist-cnn-at", "--n", "400", "--threat", "linf:0.3",
            "--attacks", "pgd-40x3", "--batch-size", "25", "--seed", "5", "--no-diagnostics"]
    ref_db, db = tmp_path / "ref.db", tmp_path / "killed.db"
    ref = _run_cli(args + ["--store", str(ref_db)])
    ref_out = ref.communicate(timeout=600)
    assert ref.returncode == 0, ref_out[1]

    proc = _run_cli(args + ["--store", str(db)])
    deadline = time.time() + 300
    while _batches(db) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    with Store(db, readonly=True) as s:
        assert s.runs()[0].status == "running"  # its process is alive and holds it
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    done_at_kill = _batches(db)
    assert 2 <= done_at_kill < 16, "the run must be killed mid-way for this test to mean anything"
    with Store(db, readonly=True) as s:
        assert s.runs()[0].status == "interrupted"  # killed: nobody holds it, a rerun resumes it

    resumed = _run_cli(args + ["--store", str(db)])
    out, errs = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, errs
    assert f"resumed: {done_at_kill * 25} points" in out
    assert _outcomes(db) == _outcomes(ref_db)
    assert len(_outcomes(db)) == 400


def test_ctrl_c_keeps_finished_batches(tmp_path):
    db = tmp_path / "int.db"
    # the child gets SIGINT's default action back: a shell starts background jobs with SIGINT
    # ignored, and a Python started so never raises KeyboardInterrupt (the test would then see
    # the run finish instead of stop)
    proc = _run_cli(["evaluate", "--model", "mnist-cnn-at", "--n", "400", "--attacks", "pgd-40x3",
                     "--batch-size", "25", "--no-diagnostics", "--store", str(db)],
                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while _batches(db) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "resume" in err
    assert _batches(db) >= 1
    with Store(db) as s:
        (run,) = s.runs()
        assert run.status == "interrupted"  # no live process holds it
