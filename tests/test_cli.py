"""The command line: the main job's table and store, listings, and one-line errors with exit 2."""
from __future__ import annotations

import sqlite3

import pytest

from robustlab.cli import main


def test_evaluate_prints_table_and_stores(tmp_path, capsys):
    db = tmp_path / "runs.db"
    rc = main(["evaluate", "--model", "mnist-cnn", "--n", "100", "--threat", "linf:0.3",
               "--attacks", "fgsm,pgd-10", "--store", str(db)])
    out = capsys.readouterr().out
    assert rc == 0
    for word in ("clean", "FGSM", "PGD-10", "robust", "forward", "backward", "wall time"):
        assert word in out
    assert "robust accuracy 0.00%" in out or "robust accuracy 1.00%" in out
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0] == 100
    con.close()
    rc = main(["runs", str(db)])
    out = capsys.readouterr().out
    assert rc == 0 and "done" in out and "100/100" in out


def test_models_lists_shipped(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "mnist-cnn-at" in out and "mnist-cnn" in out


@pytest.mark.parametrize("args,needle", [
    (["evaluate", "--model", "nope"], "name: unknown model"),
    (["evaluate", "--model", "mnist-cnn", "--threat", "linf:-1"], "eps"),
    (["evaluate", "--model", "mnist-cnn", "--threat", "linf"], "threat"),
    (["evaluate", "--model", "mnist-cnn", "--n", "abc"], "--n"),
    (["evaluate", "--model", "mnist-cnn", "--n", "0"], "n: expected a positive"),
    (["evaluate", "--model", "mnist-cnn", "--data", "cifar"], "name: unknown dataset"),
    (["evaluate", "--model", "mnist-cnn", "--attacks", "pgd,zzz"], "attacks: unknown attack"),
    (["evaluate", "--model", "mnist-cnn", "--data", "digits"], "model: forward pass failed"),
    (["evaluate", "--bogus"], "No such option"),
    (["evaluate"], "Missing option '--model'"),
    (["runs", "/nonexistent/runs.db"], "store: no such file"),
])
def test_bad_arguments_one_line_exit_2(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert err.count("\n") == 0 or "Traceback" not in err
    assert "Traceback" not in err


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_refuses_a_port_out_of_range(port, capsys):
    assert main(["serve", "--model", "mnist-cnn", "--port", port]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: port:")


def test_serve_knows_the_input_shape_of_shipped_models():
    from robustlab.cli_models import input_shape

    assert input_shape("mnist-cnn") == (1, 28, 28) and input_shape("kws-cnn") == (1, 8000)
    assert input_shape("no-such-model") is None
